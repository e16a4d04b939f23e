"""Start atheris on one target: `python -m fuzz.launch TARGET [libFuzzer flags] [CORPUS...]`.

Rules this module keeps:
1. The only module that imports atheris: the targets themselves are plain functions, so
   the tests can replay findings through them without a fuzzer.
2. The target's module is imported inside `atheris.instrument_imports`, limited to the
   packages its `fuzz.run.Target` names, so coverage guides the fuzzer through our code
   and the parsers it relies on, and nothing else slows it down.
3. Everything after TARGET is libFuzzer's: flags (`-max_total_time=60`) and corpus
   directories, the first of which libFuzzer adds new inputs to.
"""

from __future__ import annotations

import importlib
import sys

import atheris  # type: ignore[import-untyped]  # atheris ships no type information

from fuzz.run import CANARY, TARGETS


def main() -> None:
    """Instrument, import and fuzz the target named by the first argument."""
    targets = {**TARGETS, CANARY.name: CANARY}
    if len(sys.argv) < 2 or sys.argv[1] not in targets:
        sys.exit(f"usage: python -m fuzz.launch {{{','.join(targets)}}} [libFuzzer args]")
    target = targets[sys.argv[1]]
    with atheris.instrument_imports(include=list(target.instrument)):
        module = importlib.import_module(target.module)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], module.test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
