"""The laptop side stays light: the listener's modules import no torch, numpy or transformers, and the
command module imports neither redis nor pyperclip until a command runs (fast `--help`).

Run: .venv/bin/python -m pytest tests/cb/clip/test_clip_startup.py -q
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=ROOT, timeout=60)
    return set(out.stdout.split())


def test_listener_modules_import_no_model_side() -> None:
    mods = _modules_after("import cb.clip.subscriber, cb.clip.clipboard, cb.clip.publish, cb.clip.status, "
                          "cb.clip.service, cb.clip.bench, redis, pyperclip")
    assert not {"torch", "numpy", "transformers", "ulm"} & mods


def test_command_module_defers_redis_and_pyperclip() -> None:
    mods = _modules_after("import cb.commands.clip")
    assert "redis" not in mods and "pyperclip" not in mods and "cb.clip.subscriber" not in mods


def test_listen_help_answers() -> None:
    out = subprocess.run([sys.executable, "-m", "cb", "clip", "listen", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0 and "--once" in out.stdout and "half-open" in out.stdout
