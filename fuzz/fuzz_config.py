"""Fuzz target: a config file, any bytes at all, through `load_config`.

The input is written as the config file (in a private temporary directory, so relative
paths in it point there) and read with `proxy.config.load_config`. For each input this
checks that:
1. it returns a `Config` or raises `ConfigError`, and nothing else (proxy/config's rule 1);
2. every problem in a `ConfigError` is one printable line of UTF-8, as the CLI prints it;
3. every string in a returned Config encodes as UTF-8;
4. all of it takes under `fuzz.invariants.LIMIT_SECONDS`.

Seeds: config.example.yaml and fuzz/seeds/config. Run with `scripts/fuzz config [SECONDS]`.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from fuzz.invariants import InvariantBroken, assert_utf8, guarded, timed
from proxy.config import load_config
from proxy.errors import ConfigError


@functools.cache
def _config_file() -> Path:
    """The file each input is written to, in a directory of its own made on first use."""
    return Path(tempfile.mkdtemp(prefix="nocontact-fuzz-config-")) / "config.yaml"


def check(data: bytes) -> None:
    """Every invariant of the module docstring, for one config file."""
    file = _config_file()
    file.write_bytes(data)
    with timed(len(data)):
        try:
            config = load_config(file)
        except ConfigError as error:
            for problem in error.problems:
                line = str(problem)
                if "\n" in line or "\r" in line:
                    raise InvariantBroken(f"a problem spans lines: {line!r}") from None
                assert_utf8(line, "problem")
            return
    assert_utf8(config.model_dump(), "config")


test_one_input = guarded(check)
