"""Schemathesis over /openapi.json against a real `ulm serve` (M17): every operation, schema-driven positive
and negative data, with and without the key. Zero 5xx, responses and content types as documented,
negative data rejected, no operation that ignores auth.

`positive_data_acceptance` is left out on purpose: data the schema allows can still be refused by
limits the schema cannot express (a prompt longer than the context, out-of-vocabulary token ids).
The server cap (--max-tokens-cap 64) bounds every generation the fuzzer asks for.

Run: .venv/bin/python -m pytest tests/ulm/server/test_schemathesis.py -q
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.ulm.server.harness import API_KEY, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_schemathesis_finds_no_5xx_and_no_contract_violation(server: Server, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    proc = subprocess.run(
        [str(st), "run", f"{server.base}/openapi.json", "-H", f"Authorization: Bearer {API_KEY}",
         "--max-examples", "8", "--seed", "7", "--exclude-checks", "positive_data_acceptance",
         "--max-response-time", "10", "--no-color"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failure" not in proc.stdout
    assert " 500 " not in server.log()
