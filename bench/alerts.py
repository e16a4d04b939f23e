"""Benchmark: alerts (issue 23).

Run: .venv/bin/python bench/alerts.py [--alerts N] [--dir DIR]

Sections:
  delivery: time from a held message to its alert at a local json:// transport, through
            the real daemon and SMTP filter path (bench/alert_delivery.py). Goal p99 <= 5 s.
(The threat detection's sections, throughput and precision/recall, join here.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/alerts.py` puts bench/, not the repo, first
    sys.path.insert(0, str(REPO))

from bench import alert_delivery  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=alert_delivery.REPO / "var")
    args = parser.parse_args()
    ok = alert_delivery.run(args.alerts, args.dir)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
