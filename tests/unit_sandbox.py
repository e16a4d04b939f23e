"""Run a command under the kernel-side parts of a systemd unit's sandbox, without systemd.

Run by Debian's /usr/bin/python3 (it has libseccomp's binding, python3-seccomp), as root:
    /usr/bin/python3 tests/unit_sandbox.py UNIT_FILE UID GID -- COMMAND...

Rules this module keeps:
1. What is applied is read from the unit file, never restated here: `SystemCallFilter=`
   (systemd's groups expanded with `systemd-analyze syscall-filter`, an allow list first,
   then `~` lines taken out of it), `SystemCallErrorNumber=` (the action for the rest),
   `MemoryDenyWriteExecute=` (systemd's own rules: no mmap both writable and executable,
   no mprotect/pkey_mprotect to executable, no shmat with SHM_EXEC), `RestrictAddressFamilies=`
   (socket() only for the families listed), `NoNewPrivileges=`, `UMask=`, `LimitCORE=`.
   With UNIT_SANDBOX_STRICT set, a refused call kills the process instead of failing with
   the unit's SystemCallErrorNumber=, so a test sees every one; the comma-separated names
   in it are still answered EPERM (refusals the caller has checked are harmless).
2. The user is dropped (no supplementary groups) before the filter is loaded, as systemd does,
   so the filter may forbid setuid and friends; then COMMAND is executed in place.
3. Mount namespaces (ProtectSystem=, PrivateTmp=, ...), PrivateUsers= and the capability
   sets are not applied: they need a service manager (or unshare and more root than a test
   should use). The caller says so where it reports what was measured.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import seccomp  # type: ignore[import-not-found]  # Debian's python3-seccomp

PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000


def settings(unit: Path) -> dict[str, list[str]]:
    """Every `Key=value` of the unit's [Service] section, values in order."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def groups() -> dict[str, list[str]]:
    """systemd's syscall groups, as `systemd-analyze syscall-filter` lists them."""
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True
    ).stdout
    table: dict[str, list[str]] = {}
    current: list[str] = []
    for line in listing.splitlines():
        if line.startswith("@"):
            current = table.setdefault(line.strip(), [])
        elif line.startswith("    ") and not line.strip().startswith("#"):
            current.append(line.strip())
    return table


def expand(names: list[str], table: dict[str, list[str]]) -> set[str]:
    """Syscall names, groups expanded recursively."""
    result: set[str] = set()
    for name in names:
        result |= expand(table[name], table) if name.startswith("@") else {name}
    return result


def allowed_syscalls(values: list[str]) -> set[str]:
    """SystemCallFilter= lines: the first an allow list, `~` lines taken out of it (rule 1)."""
    table = groups()
    allowed: set[str] = set()
    for value in values:
        if value.startswith("~"):
            allowed -= expand(value[1:].split(), table)
        else:
            allowed |= expand(value.split(), table)
    return allowed


def build_filter(unit: dict[str, list[str]]) -> seccomp.SyscallFilter:
    """The unit's syscall filter, MemoryDenyWriteExecute= and RestrictAddressFamilies=."""
    number = unit.get("SystemCallErrorNumber", [""])[-1]
    action = seccomp.ERRNO(getattr(errno, number)) if number else seccomp.KILL_PROCESS
    strict = os.environ.get("UNIT_SANDBOX_STRICT")
    if strict is not None:
        action = seccomp.KILL_PROCESS  # any call the filter refuses ends the process: seen
    rules = seccomp.SyscallFilter(defaction=action)
    conditional = {"mmap", "mprotect", "pkey_mprotect", "shmat", "socket"}
    mdwe = unit.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes"
    families = unit.get("RestrictAddressFamilies", [""])[-1].split()
    for name in strict.split(",") if strict else ():
        rules.add_rule(seccomp.ERRNO(errno.EPERM), name)  # refused, known to be harmless
    for name in sorted(allowed_syscalls(unit["SystemCallFilter"]) - conditional):
        with contextlib.suppress(RuntimeError, ValueError):  # a name this arch does not have
            rules.add_rule(seccomp.ALLOW, name)
    arg = seccomp.Arg
    writable_exec = PROT_WRITE | PROT_EXEC
    for prot in (0, PROT_WRITE, PROT_EXEC) if mdwe else (None,):
        condition = () if prot is None else (arg(2, seccomp.MASKED_EQ, writable_exec, prot),)
        rules.add_rule(seccomp.ALLOW, "mmap", *condition)
    for name in ("mprotect", "pkey_mprotect"):
        condition = (arg(2, seccomp.MASKED_EQ, PROT_EXEC, 0),) if mdwe else ()
        rules.add_rule(seccomp.ALLOW, name, *condition)
    condition = (arg(2, seccomp.MASKED_EQ, SHM_EXEC, 0),) if mdwe else ()
    rules.add_rule(seccomp.ALLOW, "shmat", *condition)
    for family in families or ["any"]:
        condition = () if family == "any" else (arg(0, seccomp.EQ, getattr(socket, family)),)
        rules.add_rule(seccomp.ALLOW, "socket", *condition)
    if unit.get("NoNewPrivileges", ["no"])[-1] != "yes":
        rules.set_attr(seccomp.Attr.CTL_NNP, 0)
    return rules


def main(argv: list[str]) -> None:
    unit_file, uid, gid, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit("usage: unit_sandbox.py UNIT_FILE UID GID -- COMMAND...")
    unit = settings(Path(unit_file))
    rules = build_filter(unit)
    if unit.get("LimitCORE"):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.umask(int(unit.get("UMask", ["0022"])[-1], 8))
    os.setgroups([])
    os.setresgid(int(gid), int(gid), int(gid))
    os.setresuid(int(uid), int(uid), int(uid))
    rules.load()
    os.execvp(command[0], command)  # noqa: S606 - the command as given, no shell


if __name__ == "__main__":
    main(sys.argv[1:])
