'''The text format a model writes its proposals in: tag-like blocks with attributes and a raw body.

A 135M model copies short tags and quoted numbers far more reliably than it escapes newlines in JSON, so
each proposal is one block; the body is the new text exactly as it should appear in the file:

    <edit path="app.py" version="3f9a1c2b" line="12">
        return total
    </edit>

    <replace path="app.py" version="3f9a1c2b" start="20" end="24">
    def area(r):
        return math.pi * r * r
    </replace>

    <insert path="app.py" version="3f9a1c2b" after="0">
    import math
    </insert>

    <create path="tests/test_area.py">
    from app import area
    </create>

    <run tab="tests">pytest -q</run>

Rules (the parser in `tools.parse` is the reference):

- Blocks: `edit` (= single_line_edit: one line), `replace` (= line_replace_edit: lines start..end,
  both included; an empty body deletes them), `insert` (= insert_after_edit: after line `after`, 0 = at
  the top), `create` (= create_file: a new file), `run` (a shell command for an agentshell tab; `tab` is
  optional). The long tool names work as tags too (`<line_replace_edit ...>`).
- `path` is the file as named in its header; `version` is copied from the header (`tools.hashing`);
  line numbers are the numbers shown in front of the lines (`tools.numbered`).
- Attribute values are quoted ("..." or '...'); bare numbers (`line=12`) are accepted.
- The body starts after the newline that ends the opening tag and stops before `</tag>`; it is kept
  exactly (indentation included). When `</tag>` sits on its own line, the newline before it only ends
  the last body line. So `<replace ...>` + newline + `</replace>` has an empty body (a deletion), and a
  blank line between them is one empty line. A body written on the opening line (`<edit ...>x</edit>`)
  is that text. A Markdown fence wrapping the whole body (```python ... ```) is dropped, as are fences
  around whole blocks.
- A body cannot contain its own closing tag (`</edit>` inside an edit's body) nor the opening tag of a
  block (`<insert path=...>`): a block whose close tag comes after the next block's opening tag is
  reported as not closed, so one forgotten `</edit>` never swallows the next block.
- `<replace path="..." version="..." start="3" end="5"/>` (self-closing) has an empty body: a deletion.
- Text outside blocks is free prose and is ignored.

`INSTRUCTIONS` teaches this to the model (one example per operation); `GRAMMAR` describes it in GBNF so
a server can constrain generation to it; `render()` writes a proposal back as a block (for editing a
proposal in $EDITOR and for tests).
'''

from __future__ import annotations

import re

from tools.proposals import (
    CreateFile,
    InsertAfterEdit,
    LineReplaceEdit,
    Proposal,
    RunProposal,
    SingleLineEdit,
)

TAGS = ("edit", "replace", "insert", "create", "run")
LONG_NAMES = {"single_line_edit": "edit", "line_replace_edit": "replace", "insert_after_edit": "insert",
              "create_file": "create", "run": "run"}

# An opening tag: <name attr="v" ...>. Group 1 = the name, group 2 = the attribute text.
OPEN_TAG = re.compile(
    r"<(" + "|".join(sorted(set(TAGS) | set(LONG_NAMES), key=len, reverse=True)) + r")\b([^<>]*)>",
    re.IGNORECASE,
)
# One attribute: name = "value" | 'value' | bare.
ATTRIBUTE = re.compile(r"""\s*([A-Za-z_][\w-]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")


def close_tag(name: str) -> re.Pattern[str]:
    """The closing tag of a block opened as `name` (its long or short name, any case)."""
    short = LONG_NAMES.get(name.lower(), name.lower())
    names = [short, *(long for long, s in LONG_NAMES.items() if s == short and long != short)]
    return re.compile(r"</\s*(?:" + "|".join(names) + r")\s*>", re.IGNORECASE)


INSTRUCTIONS = """\
To change files, write edit blocks. Each file you were shown has a header like
<file path="app.py" version="3f9a1c2b"> and numbered lines. Copy the path and the version exactly,
and use the line numbers shown. Write the new text exactly as it should appear in the file, with its
indentation, without line numbers. Use one block per change:

Replace one line (here line 12):
<edit path="app.py" version="3f9a1c2b" line="12">
    return total
</edit>

Replace lines 20 to 24 (both included) with new lines; an empty body deletes them:
<replace path="app.py" version="3f9a1c2b" start="20" end="24">
def area(r):
    return math.pi * r * r
</replace>

Insert new lines after line 3 (after="0" inserts at the top):
<insert path="app.py" version="3f9a1c2b" after="3">
import math
</insert>

Create a new file:
<create path="tests/test_area.py">
from app import area
</create>

Run a shell command (the user confirms first):
<run tab="tests">pytest -q</run>

Line numbers always refer to the file as you were shown it. Never write "rest of code" or "..." in place
of real lines: write every line the file should contain in the changed range.
"""

GRAMMAR = r"""
# GBNF (llama.cpp-style) for an answer that mixes prose with edit blocks.
root      ::= (prose | block)*
prose     ::= [^<] | "<" [^erci]   # "<" not starting a block tag
block     ::= edit | replace | insert | create | run
edit      ::= "<edit" sp path sp version sp "line=" num ">" nl body "</edit>"
replace   ::= "<replace" sp path sp version sp "start=" num sp "end=" num ">" nl body "</replace>"
insert    ::= "<insert" sp path sp version sp "after=" num ">" nl body "</insert>"
create    ::= "<create" sp path ">" nl body "</create>"
run       ::= "<run" (sp "tab=" str)? ">" [^<\n]+ "</run>"
path      ::= "path=" str
version   ::= "version=" "\"" [0-9a-f]{8} "\""
num       ::= "\"" [0-9]+ "\""
str       ::= "\"" [^"\n]* "\""
body      ::= ([^<] | "<" [^/])*
sp        ::= " "+
nl        ::= "\n"
""".strip()


def _attr(value: str | int) -> str:
    text = str(value)
    return f"'{text}'" if '"' in text else f'"{text}"'


def render(p: Proposal) -> str:
    """A proposal as a block of this format; `parse_proposals(render(p))` gives `p` back."""
    if isinstance(p, RunProposal):
        tab = f" tab={_attr(p.tab)}" if p.tab else ""
        return f"<run{tab}>{p.command}</run>"
    if isinstance(p, SingleLineEdit):
        head = f"<edit path={_attr(p.path)} version={_attr(p.version)} line={_attr(p.line)}>"
    elif isinstance(p, LineReplaceEdit):
        head = f"<replace path={_attr(p.path)} version={_attr(p.version)} start={_attr(p.start)} end={_attr(p.end)}>"
    elif isinstance(p, InsertAfterEdit):
        head = f"<insert path={_attr(p.path)} version={_attr(p.version)} after={_attr(p.line)}>"
    elif isinstance(p, CreateFile):
        head = f"<create path={_attr(p.path)}>"
    else:
        raise TypeError(f"not a proposal: {p!r}")
    tag = head[1:].split(" ", 1)[0]
    # A content ending in "\n" already ends its last line; otherwise the newline before the close ends it.
    body = p.content if p.content.endswith("\n") or not p.content else p.content + "\n"
    return f"{head}\n{body}</{tag}>"
