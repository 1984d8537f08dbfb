"""`ulm serve`'s OpenMP tuning: a shorter busy-wait unless the user chose the wait policy.

Run: .venv/bin/python -m pytest tests/ulm/commands/test_serve_cmd.py -q
"""

from __future__ import annotations

import re

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


@pytest.mark.parametrize(("options", "message"), [
    ({"device": "tpu"}, "--device must be cpu, cuda or cuda:N, got 'tpu'"),
    ({"device": "cuda:x"}, "--device must be cpu, cuda or cuda:N"),
    ({"device": "cpu:1"}, "--device must be cpu, cuda or cuda:N"),
    ({"quant": "int4"}, "--quant and --compile are for --device cuda"),
    ({"compile": True}, "--quant and --compile are for --device cuda"),
], ids=["unknown", "bad-index", "cpu-index", "quant-on-cpu", "compile-on-cpu"])
def test_device_options_are_refused_with_a_line_that_says_why(options: dict[str, object], message: str) -> None:
    from ulm.server.settings import ServeError, Settings, check_settings

    with pytest.raises(ServeError, match=re.escape(message)):
        check_settings(Settings(**options))  # type: ignore[arg-type]


def test_cuda_is_refused_where_torch_sees_no_gpu() -> None:
    import torch

    from ulm.server.settings import ServeError, Settings, check_settings

    if torch.cuda.is_available():
        check_settings(Settings(device="cuda"))  # a GPU machine: accepted
        with pytest.raises(ServeError, match="CUDA device"):
            check_settings(Settings(device=f"cuda:{torch.cuda.device_count()}"))
        return
    with pytest.raises(ServeError, match=r"sees no CUDA device; install a CUDA build of torch"):
        check_settings(Settings(device="cuda", quant="int4"))
