"""Packaging: the core install stays light (no torch), and the CLIs start without heavy imports."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", ["cb.cli", "ulm.cli"])
def test_cli_modules_do_not_import_torch(module: str) -> None:
    mods = _imported_after(f"import {module}")
    assert "torch" not in mods and "transformers" not in mods


def test_console_scripts_answer_help() -> None:
    bindir = Path(sys.executable).parent
    for script in ("cb", "ulm"):
        result = subprocess.run([str(bindir / script), "--help"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "Usage" in result.stdout


@pytest.mark.slow
@pytest.mark.integration
def test_core_install_has_no_torch_and_cb_help_works(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
                   check=True, timeout=600, capture_output=True)
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                            text=True, check=True).stdout.lower()
    assert "typer==" in listed
    assert "torch==" not in listed and "transformers==" not in listed
    result = subprocess.run([str(env_dir / "bin" / "cb"), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
