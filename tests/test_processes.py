"""The daemon's processes: all there from the start, no secret inherited, no core dumped."""

from __future__ import annotations

import os
from pathlib import Path

from tests.test_smtp import _write_config, daemon, free_port

CANARY = "canary-auth-token-3f9a"


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found += [int(child) for child in children]
    return found


def _core_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return " ".join(line.split()[4:6])
    raise AssertionError("no core limit")


def test_children_start_with_the_daemon_inherit_no_secret_and_dump_no_core(
    tmp_path: Path,
) -> None:
    """Before any message: the two readers and the sealer are running (one first seen at
    the first held item would date it); none has the daemon's TWILIO_AUTH_TOKEN in its
    environment; the daemon and each child have a core size limit of 0."""
    port = free_port()
    config = tmp_path / "nocontact.yaml"
    _write_config(config, port)
    environment = {**os.environ, "TWILIO_AUTH_TOKEN": CANARY}
    with daemon(config, port, env=environment) as process:
        children = _children(process.pid)
        commands = sorted(Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[2]
                          for child in children)  # fmt: skip
        assert commands == [b"proxy.archive.sealer", b"proxy.readers", b"proxy.readers"]
        assert CANARY.encode() in Path(f"/proc/{process.pid}/environ").read_bytes()
        for child in children:
            assert CANARY.encode() not in Path(f"/proc/{child}/environ").read_bytes()
        for pid in (process.pid, *children):
            assert _core_limit(pid) == "0 0"
