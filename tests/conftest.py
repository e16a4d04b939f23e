"""Settings every test shares.

A test run makes several hundred archives, each with a segment made whole before use and
the next one prepared ahead (proxy/archive/segments.py rule 1). At the default 64 MiB that
reserved some 33 GB of disk per run, and filled a CI machine's disk part-way through. Tests
make their archives with 1 MiB segments (layout.py rule 4), in this process and in every
daemon, portal or command they start (the environment is inherited). A test that needs
another size passes `segment_bytes` itself; the benchmarks keep the default.
"""

from __future__ import annotations

import os

from proxy.archive.layout import SEGMENT_ENV

os.environ.setdefault(SEGMENT_ENV, "1")
