"""Sessions: per project, open files kept in order, conversation as JSONL, `cb session ...` and files commands.

Run: .venv/bin/python -m pytest tests/cb/test_session.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cb import paths, session
from cb.cli import app


def test_current_session_is_per_project_and_resumed(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    sa = session.current(a)
    assert session.current(a).id == sa.id
    assert session.current(b).id != sa.id
    fresh = session.new(a, "second")
    assert session.current(a).id == fresh.id
    assert {s.id for s in session.list_all(a)} == {sa.id, fresh.id}


def test_conversation_is_jsonl_and_survives_a_torn_last_line(tmp_path: Path) -> None:
    s = session.current(tmp_path)
    s.append("user", "hi\nthere \x1b]52;c;x\x07")
    s.append("assistant", "hello")
    with s.conversation_file.open("a") as f:
        f.write('{"role": "user", "cont')  # a crash mid-write
    assert s.messages() == [{"role": "user", "content": "hi\nthere \x1b]52;c;x\x07"},
                            {"role": "assistant", "content": "hello"}]
    raw = s.conversation_file.read_bytes()
    assert b"\x1b" not in raw  # the transcript escapes controls (T8): `cat` on it is safe
    assert json.loads(raw.splitlines()[0])["role"] == "user"


def test_open_close_files_commands(project: Path) -> None:
    runner = CliRunner()
    (project / "b.py").write_text("x = 1\n")
    result = runner.invoke(app, ["open", "app.py", "b.py"])
    assert result.exit_code == 0 and "opened app.py" in result.output and "opened b.py" in result.output
    assert runner.invoke(app, ["files"]).output.splitlines() == ["app.py  (2 lines)", "b.py  (1 lines)"]
    missing = runner.invoke(app, ["open", "nope.py"])
    assert missing.exit_code == 1 and "no such file: nope.py" in missing.output
    assert runner.invoke(app, ["close", "app.py"]).output.strip() == "closed app.py"
    assert runner.invoke(app, ["close", "app.py"]).exit_code == 1
    assert runner.invoke(app, ["close", "--all"]).output.strip() == "closed b.py"
    assert "no open files" in runner.invoke(app, ["files"]).output
    assert runner.invoke(app, ["close"]).exit_code == 2


def test_session_commands(project: Path) -> None:
    runner = CliRunner()
    first = session.current(project)
    first.append("user", "question one")
    first.append("assistant", "answer **one**")
    out = runner.invoke(app, ["session", "new", "other"]).output
    second_id = out.split()[-1]
    listing = runner.invoke(app, ["session", "list"]).output
    assert f"* {second_id}" in listing and first.id in listing
    assert runner.invoke(app, ["session", "use", first.id[:-2]]).exit_code == 0
    assert session.current(project).id == first.id
    shown = runner.invoke(app, ["session", "show"]).output
    assert "question one" in shown and "answer **one**" in shown
    md = runner.invoke(app, ["session", "export"]).output
    assert "## user\n\nquestion one" in md
    jsonl = runner.invoke(app, ["session", "export", "--format", "jsonl"]).output.splitlines()
    assert [json.loads(x)["content"] for x in jsonl] == ["question one", "answer **one**"]
    bad = runner.invoke(app, ["session", "use", "zzz"])
    assert bad.exit_code == 1 and "no session 'zzz'" in bad.output
    assert (paths.sessions_dir() / first.id / "conversation.jsonl").is_file()
