"""cb.grammar against llguidance itself, with SmolLM2's tokenizer: every block the format allows about an open
file is accepted (token by token, as a model would write it) and parses to the proposal it spells; blocks
about files that are not open, other versions, copied lines the file lacks, new text holding its closing
tag or starting a line with the prompt's line numbers, and prose that would open a block are refused; the
grammar stays the size of the files it quotes.

Run: .venv/bin/python -m pytest tests/cb/test_grammar.py -q
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cb.grammar import GUTTER, edit_grammar
from tests.tools.test_structure import between, file_lines, filling
from tools import (
    AnchoredInsertEdit,
    CreateFile,
    OpenFile,
    RenameEdit,
    RunProposal,
    SearchReplaceEdit,
    parse_proposals,
)
from tools.structure import Text, format_structure

GEO = OpenFile.from_bytes("geo.py", b"import math\n\ndef area(r):\n    return 3.14 * r * r\n")
TRICKY = OpenFile.from_bytes("page.html", b"<ol>\n</ol\n<\n</o\n  <li>x</li>\n</ol>\n")


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer_dir: Path) -> Any:
    import llguidance.hf
    from transformers import AutoTokenizer

    return llguidance.hf.from_tokenizer(AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir)))


def accepts(tokenizer: Any, grammar: str, text: str) -> bool:
    """Whether llguidance lets a model write `text`, as SmolLM2's tokens, and then stop."""
    import llguidance

    matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    tokens = tokenizer.tokenize_str(text)
    assert tokenizer.decode_str(tokens) == text, f"SmolLM2's tokens cannot spell {text!r}"
    return matcher.consume_tokens(tokens) and matcher.is_accepting()


def spellable(tokenizer: Any, text: str) -> bool:
    """Whether SmolLM2's tokenizer can spell `text` (it has no token for some bytes of unassigned planes)."""
    return bool(tokenizer.decode_str(tokenizer.tokenize_str(text)) == text)


def replace_block(f: OpenFile, old: str, new: str = "x = 1\n", path: str | None = None,
                  version: str | None = None) -> str:
    return (f'<replace path="{path or f.path}" version="{version or f.version}">\n<old>\n{old}</old>\n'
            f"<new>\n{new}</new>\n</replace>")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data(), file_lines, st.sampled_from(["a.py", "d/it's.txt", 'q"uote.md']))
def test_every_filling_of_every_block_is_accepted_and_parses_to_what_it_spells(tokenizer: Any, data: st.DataObject,
                                                                             lines: list[str], path: str) -> None:
    f = OpenFile(path, "0123abcd", tuple(lines))
    grammar = edit_grammar([f, GEO])
    block = data.draw(st.sampled_from(format_structure([f]).blocks))
    pieces = [data.draw(filling(p)) for p in block.pieces]
    prose = data.draw(st.sampled_from(["", "Here is the edit:\n", "a < b and x > y\n", "<p>ok</p> "]))
    text = prose + "".join(pieces) + data.draw(st.sampled_from(["", "\nDone.", "\n\n"]))
    assume(spellable(tokenizer, text))
    new_lines = [line for p, fill in zip(block.pieces, pieces, strict=True) if isinstance(p, Text)
                 for line in fill.splitlines()]
    assume(any(GUTTER.match(line) for line in lines) or not any(GUTTER.match(n) for n in new_lines))
    assert accepts(tokenizer, grammar, text), (block.form, text)
    result = parse_proposals(text)
    assert result.errors == () and len(result.proposals) == 1, text
    p = result.proposals[0]
    spelled = "".join(pieces)
    kinds = {"replace": SearchReplaceEdit, "create": CreateFile, "run": RunProposal, "rename": RenameEdit}
    assert isinstance(p, kinds.get(block.form, AnchoredInsertEdit))
    if isinstance(p, RenameEdit):
        assert (p.path, p.version, p.old, p.new) == (path, "0123abcd", pieces[3], pieces[5])
    elif isinstance(p, SearchReplaceEdit):
        assert (p.path, p.version, p.old) == (path, "0123abcd", between(spelled, "<old>\n", "</old>"))
    elif isinstance(p, AnchoredInsertEdit):
        assert (p.path, p.version, p.where) == (path, "0123abcd", block.form.split()[1])
        assert p.content == between(spelled, "<new>\n", "</new>")


def test_answers_of_several_blocks_and_prose_are_accepted(tokenizer: Any) -> None:
    pi = replace_block(GEO, "    return 3.14 * r * r\n", "    return math.pi * r * r\n")
    answer = (f"Use math.pi.\n{pi}\n"
              f'Then:\n<insert path="geo.py" version="{GEO.version}" at="end">\n<new>\nprint(area(2))\n</new>\n'
              '</insert>\n<create path="tests/test_geo.py">\nfrom geo import area\n</create>\n'
              "<run>python -m pytest -q</run>\nThat is all; a < b, and <b>bold</b> is fine.")
    assert accepts(tokenizer, edit_grammar([GEO]), answer)
    assert len(parse_proposals(answer).proposals) == 4


def test_an_edit_request_must_open_with_an_edit_block(tokenizer: Any) -> None:
    grammar = edit_grammar([GEO], edit=True)
    pi = replace_block(GEO, "    return 3.14 * r * r\n", "    return math.pi * r * r\n")
    assert accepts(tokenizer, grammar, pi)
    assert accepts(tokenizer, grammar, f"{pi}\nThat uses math.pi.\n<run>python -m pytest -q</run>\n")
    assert accepts(tokenizer, grammar, '<create path="tests/test_geo.py">\nfrom geo import area\n</create>')
    for answer in ("Use math.pi instead.", "```python\nreturn math.pi * r * r\n```", f"Here:\n{pi}",
                   "<run>sed -i s/3.14/math.pi/ geo.py</run>", ""):
        assert not accepts(tokenizer, grammar, answer), answer
        assert accepts(tokenizer, edit_grammar([GEO]), answer) == spellable(tokenizer, answer), answer


def test_lines_that_start_like_a_closing_tag_can_be_copied(tokenizer: Any) -> None:
    # llguidance's lexer is greedy: "</o" as a copied line must not keep "</old>" from closing the part
    grammar = edit_grammar([TRICKY])
    for old in ("</ol\n", "<\n", "</o\n  <li>x</li>\n</ol>\n", "<ol>\n</ol\n"):
        assert accepts(tokenizer, grammar, replace_block(TRICKY, old)), old
    assert accepts(tokenizer, grammar, f'<insert path="page.html" version="{TRICKY.version}">\n<before>\n</ol>\n'
                                       "</before>\n<new>\n<li>y</li>\n</new>\n</insert>")


def test_other_paths_other_versions_and_lines_the_file_lacks_are_refused(tokenizer: Any) -> None:
    grammar = edit_grammar([GEO, TRICKY])
    line = "    return 3.14 * r * r\n"
    assert accepts(tokenizer, grammar, replace_block(GEO, line))
    assert not accepts(tokenizer, grammar, replace_block(GEO, line, path="other.py"))
    assert not accepts(tokenizer, grammar, replace_block(GEO, line, version="deadbeef"))
    assert not accepts(tokenizer, grammar, replace_block(GEO, line, version=TRICKY.version))
    assert not accepts(tokenizer, grammar, replace_block(GEO, "    return 3.15 * r * r\n"))
    assert not accepts(tokenizer, grammar, replace_block(GEO, "return 3.14 * r * r\n"))  # not the whole line
    assert not accepts(tokenizer, grammar, replace_block(GEO, "</ol\n"))  # a line of the other open file
    assert not accepts(tokenizer, grammar, replace_block(GEO, ""))  # nothing copied
    assert not accepts(tokenizer, grammar, f'<insert path="geo.py" version="{GEO.version}">\n<after>\nnope\n'
                                           "</after>\n<new>\n</new>\n</insert>")
    assert not accepts(tokenizer, edit_grammar([]), replace_block(GEO, line))  # no file open: no edits


def test_a_copy_is_consecutive_lines_of_the_file_in_order(tokenizer: Any) -> None:
    grammar = edit_grammar([GEO])  # import math / "" / def area(r): / return 3.14 ...
    for old in ("import math\n\ndef area(r):\n", "def area(r):\n    return 3.14 * r * r\n", "\n",
                "import math\n\ndef area(r):\n    return 3.14 * r * r\n"):
        assert accepts(tokenizer, grammar, replace_block(GEO, old)), old
    for old in ("import math\ndef area(r):\n",  # a line skipped
                "def area(r):\nimport math\n",  # out of order
                "    return 3.14 * r * r\n    return 3.14 * r * r\n",  # past the end
                "def area(r):\n    \"\"\"The area.\"\"\"\n    return 3.14 * r * r\n"):  # a line invented
        assert not accepts(tokenizer, grammar, replace_block(GEO, old)), old
    # A line that holds a part's closing tag cuts its runs: copies go up to it, and on after it.
    cut = OpenFile.from_bytes("cut.txt", b"a\nsee </old> here\nb\nc\n")
    assert accepts(tokenizer, edit_grammar([cut]), replace_block(cut, "b\nc\n"))
    assert not accepts(tokenizer, edit_grammar([cut]), replace_block(cut, "a\nb\n"))
    assert accepts(tokenizer, edit_grammar([cut]), f'<insert path="cut.txt" version="{cut.version}">\n<after>\n'
                                                   "a\nsee </old> here\n</after>\n<new>\nx\n</new>\n</insert>")


@pytest.mark.parametrize("text", [
    "I will <replace this> now", "<REPLACE x>", "<Insert here>", "<edit>", "<run>", "a <search_replace_edit>",
    "<replace path='geo.py'>", "<create_file>", "x <inſert y>", "<ınsert a>", "<replacé x>", "<replace\u203f x>",
])
def test_prose_cannot_open_a_block(tokenizer: Any, text: str) -> None:
    assert not accepts(tokenizer, edit_grammar([GEO]), text)


@pytest.mark.parametrize("new", ["x = 1 </new>\n", "</NEW>\n", "</ new >\n", "</\x1cnew>\n", "<replace a>\n"])
def test_new_text_cannot_hold_its_closing_tag_or_open_a_block(tokenizer: Any, new: str) -> None:
    grammar = edit_grammar([GEO])
    assert not accepts(tokenizer, grammar, replace_block(GEO, "import math\n", new))
    assert accepts(tokenizer, grammar, replace_block(GEO, "import math\n", "# the <new> part ends at </new\n"))


def test_new_lines_cannot_start_with_the_prompts_line_numbers_unless_a_file_has_such_lines(tokenizer: Any) -> None:
    grammar = edit_grammar([GEO])
    for new in ("  4|     return math.pi * r * r\n", "x = 1\n12| y = 2\n", "3|\n", '  1|"""Doc."""\n'):
        assert not accepts(tokenizer, grammar, replace_block(GEO, "    return 3.14 * r * r\n", new)), new
    for new in ("    return math.pi * r * r\n", "x = 1  # 12| y\n", "a | b\n", "|3| x\n", "12 | x\n", "1\n"):
        assert accepts(tokenizer, grammar, replace_block(GEO, "    return 3.14 * r * r\n", new)), new
    table = OpenFile.from_bytes("table.txt", b"  1|first row\n")
    assert accepts(tokenizer, edit_grammar([table]), replace_block(table, "  1|first row\n", "  1| row one\n"))


def test_a_rename_starts_from_a_name_of_the_file_and_goes_to_any_name(tokenizer: Any) -> None:
    grammar = edit_grammar([GEO], edit=True)

    def rename(old: str, new: str) -> str:
        return f'<rename path="geo.py" version="{GEO.version}" from="{old}" to="{new}"/>'

    assert accepts(tokenizer, grammar, rename("area", "circle_area"))
    assert accepts(tokenizer, grammar, rename("r", "radius") + "\n" + rename("math", "m2"))
    for old, new in (("are", "x"), ("import", "x"), ("area", "1st"), ("area", "a-b"), ("area", "")):
        assert not accepts(tokenizer, grammar, rename(old, new)), (old, new)
    result = parse_proposals(rename("area", "circle_area"))
    assert result.proposals == (RenameEdit("geo.py", GEO.version, "area", "circle_area"),)


def test_every_mask_along_an_answer_allows_a_token_and_the_lexer_stays_within_its_limits(tokenizer: Any) -> None:
    # A complement too many in new text's regex once made llguidance's lexer give up at "</" (no token
    # allowed, so the server ended the answer there); the masks are what a server computes, step by step.
    import llguidance

    source = b"".join(b"def item_%d(x):\n    return x * %d\n\n" % (i, i) for i in range(40))
    shop = OpenFile.from_bytes("cart.py", source)
    answer = (f'<insert path="cart.py" version="{shop.version}" at="top">\n<new>\nfrom collections import '
              "defaultdict\n</new>\n</insert>\n" + replace_block(shop, "    return x * 7\n", "    return x * 8\n"))
    matcher = llguidance.LLMatcher(tokenizer, edit_grammar([shop], edit=True), log_level=0)
    for token in tokenizer.tokenize_str(answer):
        mask = matcher.compute_bitmask()
        assert not matcher.is_error() and any(mask), matcher.get_error()
        assert matcher.consume_token(token), matcher.get_error()
    assert matcher.is_accepting()


def test_the_grammar_holds_each_line_once_and_never_reads_as_gbnf() -> None:
    lines = [f"value_{i} ::= {i}" if i % 500 == 0 else f"value_{i} = {i}" for i in range(3000)]
    data = ("\n".join(lines) + "\n").encode()
    grammar = edit_grammar([OpenFile.from_bytes("big.py", data)])
    assert "::=" not in grammar
    assert grammar.count('"value_17 = 17\\n"') == 1  # one chain, shared by the replace and both insert forms
    assert grammar.count('"value_500 :\\u003a= 500\\n"') == 1
    names = sum(len(f"value_{i}") + 5 for i in range(3000))  # a rename's names: each quoted, with " | "
    assert len(grammar) < len(data) + 40 * len(lines) + names + 8000  # per line: quotes, "\\n", its chain name thrice
    # A line holding </old> cuts the replace's runs there, not the inserts': two chains.
    lines[500] += " # </old>"
    tagged = edit_grammar([OpenFile.from_bytes("big.py", ("\n".join(lines) + "\n").encode())])
    assert tagged.count('"value_17 = 17\\n"') == 2 and tagged.count('"value_500 :\\u003a= 500 # </old>\\n"') == 1


