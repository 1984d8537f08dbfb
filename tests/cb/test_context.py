"""Prompt assembly: stable order, the tools' file format, budgets per source, visible cuts.

Token counts here come from a word counter (deterministic, cheap); the real tokenizer over HTTP is
exercised in test_against_ulm_serve.py.

Run: .venv/bin/python -m pytest tests/cb/test_context.py -q
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cb import context
from tools.numbered import file_block


def words(text: str) -> int:
    return len(text.split())


def test_file_source_matches_the_tools_format(tmp_path: Path) -> None:
    f = tmp_path / "app.py"
    f.write_bytes(b"import os\r\n\r\ndef f():\r\n    return 1\r\n")
    assert context.file_source(f, "app.py").text() == file_block("app.py", f.read_bytes())


def test_binary_and_missing_files_are_named_not_dumped(tmp_path: Path) -> None:
    (tmp_path / "b.bin").write_bytes(b"\x00\x01\x02" * 10)
    assert "not shown" in context.file_source(tmp_path / "b.bin", "b.bin").text()
    assert "cannot read gone.py" in context.file_source(tmp_path / "gone.py", "gone.py").text()


def test_order_is_system_files_tabs_workspace_stdin_then_conversation(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("A = 1\n")
    sources = [context.stdin_source("PIPED"), context.workspace_source(tmp_path, tmp_path),
               context.tab_source("dev", "TABOUT"), context.file_source(tmp_path / "a.py", "a.py")]
    built = context.assemble(question="Q?", history=[{"role": "user", "content": "old"},
                                                      {"role": "assistant", "content": "reply"}],
                             sources=sources, count=words, context_length=4096, max_tokens=256,
                             instructions="TOOLS-INSTRUCTIONS")
    system = built.messages[0]["content"]
    marks = [system.index(m) for m in ("You are cb", "TOOLS-INSTRUCTIONS", '<file path="a.py"', "TABOUT",
                                        f"cwd: {tmp_path}", "PIPED")]
    assert marks == sorted(marks)
    assert [m["role"] for m in built.messages] == ["system", "user", "assistant", "user"]
    assert built.messages[-1]["content"] == "Q?" and not built.cuts
    assert built.max_tokens == 256


def test_a_long_file_is_cut_visibly_and_fits(tmp_path: Path) -> None:
    f = tmp_path / "big.py"
    f.write_text("".join(f"x{i} = {i}  # some words here\n" for i in range(1, 2001)))
    built = context.assemble(question="Q", history=[], sources=[context.file_source(f, "big.py")], count=words,
                             context_length=2048, max_tokens=512)
    system = built.messages[0]["content"]
    assert built.prompt_tokens <= 2048 - 512
    (cut,) = built.cuts
    n = int(cut.split()[0])
    assert cut == f"{n} lines of big.py not shown" and 1000 < n < 2000
    assert f"[… {n} lines of big.py not shown]" in system
    assert f'shown="1-{2000 - n}"' in system and "x1 = 1" in system and "x2000 =" not in system


def test_a_cut_is_estimated_without_asking_the_tokenizer_again(tmp_path: Path) -> None:
    f = tmp_path / "big.py"
    f.write_text("".join(f"x{i} = {i}  # some words here\n" for i in range(1, 2001)))
    asked: list[str] = []
    built = context.assemble(question="Q", history=[], sources=[context.file_source(f, "big.py")],
                             count=lambda text: asked.append(text) or words(text), context_length=2048,
                             max_tokens=512)
    assert built.cuts and len(asked) == 3  # the system prompt, the question and the whole file, once each
    assert not any("not shown]" in text for text in asked)


def test_tabs_keep_their_tail_and_conversation_keeps_the_newest(tmp_path: Path) -> None:
    tail = "\n".join(f"log line {i} with words" for i in range(3000))
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "w " * 50}
               for i in range(60)]
    built = context.assemble(question="Q", history=history, sources=[context.tab_source("dev", tail)],
                             count=words, context_length=2048, max_tokens=512)
    system = built.messages[0]["content"]
    assert "log line 2999" in system and "log line 0 " not in system
    assert any("earlier lines of tab dev not shown" in c for c in built.cuts)
    kept = built.messages[1:-1]
    assert kept and kept[-1]["content"].startswith("message 59") and len(kept) < 60
    assert any(c == f"{60 - len(kept)} earlier messages of this conversation not shown" for c in built.cuts)
    assert built.prompt_tokens <= 2048 - 512


def test_small_sources_pass_their_share_to_big_ones(tmp_path: Path) -> None:
    f = tmp_path / "big.py"
    f.write_text("".join(f"line {i} a b c d\n" for i in range(400)))
    built = context.assemble(question="Q", history=[], sources=[context.file_source(f, "big.py"),
                                                               context.stdin_source("tiny input")],
                             count=words, context_length=3000, max_tokens=500)
    # the file needs ~2,800 words; its 45% share would be ~1,100, but nothing else needs the rest
    (cut,) = built.cuts
    assert int(cut.split()[0]) < 200


def test_files_that_fit_together_are_not_cut_whatever_their_order(tmp_path: Path) -> None:
    big, small = tmp_path / "big.md", tmp_path / "small.py"
    big.write_text("".join(f"rule {i} of the project\n" for i in range(30)))
    small.write_text("x = 1\n")
    sources = [context.file_source(big, "big.md"), context.file_source(small, "small.py")]
    built = context.assemble(question="Q", history=[], sources=sources, count=words, context_length=100_000,
                             max_tokens=100)
    assert built.cuts == [] and [label for label, _ in built.sources] == ["big.md", "small.py", "conversation"]
    tight = context.assemble(question="Q", history=[], sources=sources, count=words, context_length=180,
                             max_tokens=40)
    (cut,) = tight.cuts  # too little room for both: the big one is cut, the small one stays whole
    assert cut.endswith("lines of big.md not shown") and "1| x = 1" in tight.messages[0]["content"]


def test_a_question_too_long_for_the_context_is_a_clear_error() -> None:
    with pytest.raises(context.ContextError, match=r"need \d+ tokens, but only"):
        context.assemble(question="w " * 5000, history=[], sources=[], count=words, context_length=2048,
                         max_tokens=512)


def test_workspace_summary_has_branch_and_changed_files(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    (tmp_path / "a.py").write_text("1\n")
    git("add", "a.py")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "first commit")
    (tmp_path / "a.py").write_text("2\n")
    text = context.workspace_source(tmp_path, tmp_path).text()
    assert "branch main" in text and "first commit" in text and " M a.py" in text


def test_counter_asks_once_per_distinct_text() -> None:
    calls: list[str] = []
    counter = context.Counter(lambda t: calls.append(t) or len(t))
    assert counter("abc") == 3 and counter("abc") == 3 and counter("abcd") == 4
    assert calls == ["abc", "abcd"]


def test_a_tiny_context_drops_the_edit_instructions_visibly() -> None:
    built = context.assemble(question="Q", history=[], sources=[], count=words, context_length=300,
                             max_tokens=100, instructions="edit " * 200)
    assert "edit edit" not in built.messages[0]["content"]
    assert built.cuts == ["edit instructions not shown (the 300-token context is too small for them)"]


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(file_lines=st.lists(st.integers(min_value=0, max_value=3000), max_size=8),
       stdin_lines=st.integers(min_value=0, max_value=2000), tab_lines=st.integers(min_value=0, max_value=2000),
       history=st.integers(min_value=0, max_value=80), ctx=st.sampled_from([512, 1024, 2048, 8192]),
       max_tokens=st.sampled_from([64, 512, 4096]))
def test_the_prompt_never_exceeds_the_context_and_every_cut_is_reported(
        tmp_path_factory: pytest.TempPathFactory, file_lines: list[int], stdin_lines: int, tab_lines: int,
        history: int, ctx: int, max_tokens: int) -> None:
    root = tmp_path_factory.mktemp("budget")
    sources = []
    for i, n in enumerate(file_lines):
        (root / f"f{i}.py").write_text("".join(f"x{j} = 'a b c'\n" for j in range(n)))
        sources.append(context.file_source(root / f"f{i}.py", f"f{i}.py"))
    sources += [context.stdin_source("".join(f"+ line {j} of a diff\n" for j in range(stdin_lines))),
                context.tab_source("dev", "".join(f"log {j} ok\n" for j in range(tab_lines)))]
    msgs = [{"role": "user" if j % 2 == 0 else "assistant", "content": f"m{j} " + "w " * 30} for j in range(history)]
    built = context.assemble(question="what now?", history=msgs, sources=sources, count=words, context_length=ctx,
                             max_tokens=max_tokens, instructions="use the tools " * 20)
    assert built.prompt_tokens <= ctx - min(max_tokens, ctx // 4)  # the answer keeps its reserve
    assert built.prompt_tokens + built.max_tokens <= ctx
    system = built.messages[0]["content"]
    for cut in built.cuts:
        assert f"[… {cut}]" in system or cut.startswith("edit instructions")
    assert ("[…" in system) == any(not c.startswith("edit instructions") for c in built.cuts)
