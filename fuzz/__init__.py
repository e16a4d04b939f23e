"""Coverage-guided fuzz targets (atheris), one per input path the blocked person can reach.

Rules this package keeps:
1. One module per input path: `fuzz_email`, `fuzz_sms`, `fuzz_webhook`, `fuzz_config`. Each
   has `test_one_input(data)`, which raises only when an invariant of issue 20 is broken
   (an exception escaped, a string is not UTF-8, one input took too long), and a `main()`
   that hands it to atheris.
2. The invariants and the rulebook every target decides with live in `fuzz.invariants`.
3. `fuzz.run` runs a target for a bounded time from its seed corpus and reports the input
   that broke it; `scripts/fuzz` and tests/test_fuzz.py both go through it.
"""
