"""Linux process facts the daemon relies on: subreaping, start times, the tab marker in the environment,
and killing leftovers of a previous daemon without ever hitting a reused pid.

Every tab process carries `AGENTSHELL_TAB_TOKEN=<random>` in its environment (inherited by its children).
A process is a leftover of tab T only when its environ holds T's token, it belongs to this user, and it
started no earlier than T: a pid reused by an unrelated process can match none of these by accident.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
TOKEN_VAR = "AGENTSHELL_TAB_TOKEN"
TAB_ID_VAR = "AGENTSHELL_TAB_ID"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def become_subreaper() -> bool:
    """Make orphaned descendants (double-forked `cmd &` in a tab) children of this process, to be reaped."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


_BOOT = boot_time()


def start_time(pid: int) -> float | None:
    """Unix time at which `pid` started (from /proc/<pid>/stat), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    return _BOOT + int(fields[19]) / _CLOCK_TICKS  # field 22 of stat; the two before the ')' cut are gone


def env_has(pid: int, needle: bytes) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return needle in environ.split(b"\0")


def processes_with_token(token: str, not_before: float) -> list[int]:
    """Pids of this user's processes carrying the tab token that started at or after `not_before` - 1 s."""
    needle = f"{TOKEN_VAR}={token}".encode()
    uid = os.getuid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if entry.stat().st_uid != uid:
                continue
        except OSError:
            continue
        started = start_time(pid)
        if started is None or started < not_before - 1.0:
            continue
        if env_has(pid, needle):
            found.append(pid)
    return found


def signal_marked(token: str, not_before: float, sig: int) -> int:
    """Send `sig` to every process of a tab (identified as above). Returns how many were signalled."""
    count = 0
    for pid in processes_with_token(token, not_before):
        if pid == os.getpid():
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            count += 1
    return count


def kill_leftovers(token: str, not_before: float) -> int:
    """SIGKILL every leftover process of a tab. Returns how many were signalled."""
    return signal_marked(token, not_before, signal.SIGKILL)


def group_is_tabs(pgid: int, token: str, not_before: float) -> bool:
    """Whether process group `pgid` still holds a process of this tab (so the number was not reused)."""
    for pid in processes_with_token(token, not_before):
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(pid) == pgid:
                return True
    return False


def signal_group(pgid: int, sig: int) -> bool:
    """Signal a whole process group; False when it is gone."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def parse_signal(name: str) -> int:
    """'INT', 'SIGINT', 'int' or '2' -> 2. ValueError on anything else."""
    text = name.strip().upper()
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
        raise ValueError(f"no signal number {number}")
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        raise ValueError(f"unknown signal {name!r} (try INT, TERM, HUP, KILL, USR1, 9)") from None
