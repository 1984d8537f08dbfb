"""`ulm serve`'s OpenMP tuning: a shorter busy-wait unless the user chose the wait policy.

Run: .venv/bin/python -m pytest tests/ulm/commands/test_serve_cmd.py -q
"""

from __future__ import annotations

import pytest

from ulm.commands.serve import SERVE_SPINCOUNT, tune_openmp


@pytest.mark.parametrize(("env", "expected"), [
    ({}, {"GOMP_SPINCOUNT": SERVE_SPINCOUNT}),
    ({"GOMP_SPINCOUNT": "INFINITE"}, {"GOMP_SPINCOUNT": "INFINITE"}),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "ACTIVE"}),
], ids=["unset", "spincount-chosen", "passive-chosen", "active-chosen"])
def test_the_spin_is_shortened_only_where_the_user_chose_no_wait_policy(env: dict[str, str],
                                                                        expected: dict[str, str]) -> None:
    tune_openmp(env)
    assert env == expected
