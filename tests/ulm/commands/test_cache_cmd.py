"""`ulm cache ls|rm|prune`, end to end: a real `python -m ulm` on the test's own CB_HOME, over entries that real
loads made.

Run: .venv/bin/python -m pytest tests/ulm/commands/test_cache_cmd.py -q
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cb.paths import model_cache_dir
from tests.ulm.loading.conftest import TINY, random_state
from tests.ulm.loading.gguf_files import write_gguf
from ulm.fast import load_fast
from ulm.loading import fingerprint, load_checkpoint
from ulm.registry import ModelSource


def ulm_cache(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ulm", "cache", *args], capture_output=True, text=True, timeout=120,
                          env=os.environ.copy())


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", TINY, random_state(TINY))


@pytest.fixture
def models(tiny_file: Path, tmp_path: Path) -> list[ModelSource]:
    """Two copies of the tiny model, the first loaded fast (weights + fast tensors), the second exact (weights)."""
    sources = [ModelSource(name, "gguf", tmp_path / f"{name}.gguf") for name in ("one", "two")]
    for s in sources:
        shutil.copy2(tiny_file, s.path)
    load_fast(sources[0])
    load_checkpoint(sources[1])
    return sources


def listed() -> dict[str, dict[str, object]]:
    result = ulm_cache("ls", "--json")
    assert result.returncode == 0, result.stderr
    return {str(row["source"]): row for row in json.loads(result.stdout)}


def test_ls_shows_each_entry_with_its_source_state_contents_size_and_last_use(models: list[ModelSource]) -> None:
    rows = listed()
    one, two = (rows[str(s.path.resolve())] for s in models)
    assert (one["state"], one["holds"], two["holds"]) == ("current", ["weights", "fast-int4-v1"], ["weights"])
    assert one["id"] == fingerprint(models[0]) and Path(str(one["path"])).parent == model_cache_dir()
    assert int(str(one["size_bytes"])) > int(str(two["size_bytes"])) > 0
    assert str(one["last_used"]).endswith("+00:00")
    table = ulm_cache("ls")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split() == [
        "entry", "state", "size", "last", "used", "holds", "source"]
    assert str(models[0].path.resolve()) in table.stdout and "weights, fast-int4-v1" in table.stdout
    assert table.stdout.splitlines()[-1].startswith(f"2 in {model_cache_dir()}, ")


def test_an_empty_cache_says_so() -> None:
    result = ulm_cache("ls")
    assert result.returncode == 0 and result.stdout.startswith("the model cache is empty")
    assert json.loads(ulm_cache("ls", "--json").stdout) == []


def test_rm_takes_a_model_path_an_entry_id_prefix_or_a_deleted_file(models: list[ModelSource], tmp_path: Path) -> None:
    one, two = models
    result = ulm_cache("rm", str(one.path))
    assert result.returncode == 0 and result.stdout.startswith(f"removed {fingerprint(one)[:12]}")
    assert list(listed()) == [str(two.path.resolve())]
    load_checkpoint(one)
    result = ulm_cache("rm", fingerprint(one)[:6])
    assert result.returncode == 0 and list(listed()) == [str(two.path.resolve())]
    two.path.unlink()
    assert ulm_cache("rm", str(two.path)).returncode == 0 and listed() == {}


def test_rm_of_something_not_cached_is_one_error_line(models: list[ModelSource], tmp_path: Path) -> None:
    for ref in (str(tmp_path / "never.gguf"), "no-such-model", "ffff"):
        result = ulm_cache("rm", ref)
        assert result.returncode == 1 and result.stderr.startswith("error: no cache entry for")
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert len(listed()) == 2


def test_prune_removes_entries_of_gone_or_changed_files_and_leftovers(models: list[ModelSource]) -> None:
    one, two = models
    one.path.unlink()
    st = two.path.stat()
    os.utime(two.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: its entry no longer matches
    root = model_cache_dir()
    (root / "tokenizers").mkdir()  # the previous layout's tokenizer cache
    crashed = root / ".tmp-0123-x"
    crashed.mkdir()
    os.utime(crashed, (1_000_000_000, 1_000_000_000))
    states = sorted(str(row["state"]) for row in json.loads(ulm_cache("ls", "--json").stdout))
    assert states == ["source changed", "source gone", "temp", "unknown"]
    before = sorted(root.iterdir())
    dry = ulm_cache("prune", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would remove") == 4 and sorted(root.iterdir()) == before
    result = ulm_cache("prune")
    assert result.returncode == 0 and result.stdout.count("removed") == 4 and "freed" in result.stdout
    assert list(root.iterdir()) == []
    assert ulm_cache("prune").stdout.strip() == "nothing to prune"


def test_prune_keeps_current_entries_and_all_removes_them(models: list[ModelSource]) -> None:
    assert ulm_cache("prune").stdout.strip() == "nothing to prune" and len(listed()) == 2
    result = ulm_cache("prune", "--all")
    assert result.returncode == 0 and result.stdout.count("removed") == 2 and listed() == {}


def test_help_teaches_with_examples() -> None:
    result = ulm_cache("--help")
    assert result.returncode == 0 and "ulm cache prune --dry-run" in result.stdout
    for command in ("ls", "rm", "prune"):
        assert "Examples" in ulm_cache(command, "--help").stdout
