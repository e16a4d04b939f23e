"""`nocontact portal -c FILE` as its own process: it listens, serves the login page with
its headers, dumps no core, and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.portal_helpers import CONFIG, write_config
from tests.servers import free_port
from tests.test_smtp import _wait_for_port


def test_the_portal_runs_as_its_own_process(tmp_path: Path) -> None:
    port = free_port()
    config = CONFIG.replace("portal:\n", f"portal:\n  listen: 127.0.0.1:{port}\n").replace(
        "https://home.example/portal/", f"http://127.0.0.1:{port}/"
    )
    path = write_config(tmp_path, config)
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy", "portal", "-c", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        _wait_for_port(port, process)
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        core = next(line for line in limits.splitlines() if line.startswith("Max core"))
        assert core.split()[4:6] == ["0", "0"]  # soft and hard limits
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as answer:
            page = answer.read().decode()
            assert answer.status == 200
            assert answer.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert "held" not in page.lower()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err
