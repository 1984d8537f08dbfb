"""E5: SIGKILL at random points while applying a 1 MB edit leaves the file exactly old or exactly new.

The edit is planned once (diff and checks of a 1 MB replacement take ~0.5 s); each forked child runs
the write path, `tools.apply.commit` (re-check, journal, temp file, fsync, rename), with
os.write / os.fsync / os.replace slowed by a random sleep of up to 2 ms, widening the windows between
write, fsync and rename. Its first such call (the journal's, right after planning) signals the parent
through a pipe; the parent then kills it after a random delay spread over the write phase's duration
and checks the file's sha256. Hundreds of tries in under 30 s. Temp files a killed child leaves are clearly
named and removed by the next apply to the same file.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import time
from pathlib import Path

import pytest

from tools import Journal, LineReplaceEdit, Plan, file_version, plan_batch
from tools.apply import commit

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TRIES = 500
BUDGET_S = 24.0


def _apply_in_child(plan: Plan, journal_dir: Path) -> tuple[int, int]:
    """Fork a child that applies the edit and exits; returns (pid, fd that gets a byte when writing starts)."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(ready_r)
            random.seed(os.getpid() ^ time.monotonic_ns())
            real_write = os.write

            def slowed(fn):
                def wrapper(*args, **kwargs):
                    nonlocal ready_w
                    if ready_w >= 0:
                        real_write(ready_w, b"w")
                        os.close(ready_w)
                        ready_w = -1
                    time.sleep(random.uniform(0, 0.002))
                    return fn(*args, **kwargs)

                return wrapper

            os.write, os.fsync, os.replace = slowed(os.write), slowed(os.fsync), slowed(os.replace)
            result = commit(plan, Journal(journal_dir, keep=3))
            os._exit(0 if result.status == "applied" else 3)
        finally:
            os._exit(4)
    os.close(ready_w)
    return pid, ready_r


def _wait_writing(ready: int) -> None:
    os.read(ready, 1)
    os.close(ready)


def test_e5_sigkill_while_applying_never_tears_the_file(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    old = b"".join(b"old line %06d of the original file, padded to fifty\n" % i for i in range(20_000))
    new_text = "".join(f"new line {i:06d} written by the edit, padded as well.\n" for i in range(20_000))
    assert len(old) > 1_000_000 and len(new_text) > 1_000_000
    target = root / "big.txt"
    target.write_bytes(old)
    journal_dir = tmp_path / "journal"
    plan = plan_batch([LineReplaceEdit("big.txt", file_version(old), 2, 20_000, new_text)], root)
    assert plan.ok

    pid, ready = _apply_in_child(plan, journal_dir)
    _wait_writing(ready)
    start = time.monotonic()
    assert os.waitpid(pid, 0)[1] == 0
    duration = time.monotonic() - start
    new = target.read_bytes()
    assert new != old and new.startswith(old.split(b"\n", 1)[0])
    digests = {hashlib.sha256(old).hexdigest(): "old", hashlib.sha256(new).hexdigest(): "new"}

    outcomes = {"old": 0, "new": 0}
    tries = 0
    deadline = time.monotonic() + BUDGET_S
    while tries < TRIES and time.monotonic() < deadline:
        target.write_bytes(old)
        pid, ready = _apply_in_child(plan, journal_dir)
        _wait_writing(ready)
        time.sleep(random.uniform(0, duration * 1.2))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        state = digests.get(hashlib.sha256(target.read_bytes()).hexdigest())
        assert state is not None, f"torn file after {tries} tries"
        outcomes[state] += 1
        tries += 1
    assert tries >= 50, f"only {tries} tries fit in the budget"
    assert outcomes["old"] and outcomes["new"], outcomes  # the kills landed before and after the rename

    # A complete apply afterwards cleans every temp file the killed children left.
    target.write_bytes(old)
    pid, ready = _apply_in_child(plan, journal_dir)
    _wait_writing(ready)
    assert os.waitpid(pid, 0)[1] == 0
    assert sorted(os.listdir(root)) == ["big.txt"]
    print(f"E5: {tries} kills, file old {outcomes['old']}x, new {outcomes['new']}x, torn 0; "
          f"its write phase takes {duration * 1000:.0f} ms (with the slowed syscalls)")
