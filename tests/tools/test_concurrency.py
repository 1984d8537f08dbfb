"""E14: two cb processes commit different edits of the same file at the same moment: no lost update.

Both edits are planned against the same version; two forked children are released together into the
write path. The directory lock serialises them, so the second one re-reads the file, sees the first one's
bytes and refuses as stale: exactly one applies, every time, and the file holds exactly its result.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from tools import Journal, SingleLineEdit, file_version, plan_batch
from tools.apply import commit

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROUNDS = 40


def _commit_in_child(plan, journal_dir: Path, go: int) -> tuple[int, int]:
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.read(go, 1)  # wait for the starting gun
            result = commit(plan, Journal(journal_dir))
            os.write(out_w, pickle.dumps((result.status, result.errors)))
            os._exit(0)
        finally:
            os._exit(4)
    os.close(out_w)
    return pid, out_r


def test_e14_concurrent_writers_never_lose_an_update(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    target = root / "shared.txt"
    old = b"".join(b"line %d\n" % i for i in range(50))
    plans = []
    target.write_bytes(old)
    for who in ("A", "B"):
        plan = plan_batch([SingleLineEdit("shared.txt", file_version(old), 10, f"written by {who}")], root)
        assert plan.ok
        plans.append(plan)
    results = {plans[0].changes[0].new: "A", plans[1].changes[0].new: "B"}
    winners = {"A": 0, "B": 0}
    for _ in range(ROUNDS):
        target.write_bytes(old)
        go_r, go_w = os.pipe()
        children = [_commit_in_child(p, tmp_path / "journal", go_r) for p in plans]
        os.write(go_w, b"xx")
        statuses = []
        for pid, out in children:
            assert os.waitpid(pid, 0)[1] == 0
            with os.fdopen(out, "rb") as f:
                statuses.append(pickle.loads(f.read()))
        os.close(go_r)
        os.close(go_w)
        applied = [s for s, _ in statuses if s == "applied"]
        refused = [e for s, e in statuses if s == "refused"]
        assert len(applied) == 1 and len(refused) == 1, statuses
        assert "changed on disk while you were deciding" in refused[0][0]
        winners[results[target.read_bytes()]] += 1
    assert sum(winners.values()) == ROUNDS
