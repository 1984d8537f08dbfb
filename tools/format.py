'''The text format a model writes its proposals in: tag-like blocks, what the model is told, and `render`.

Small models copy lines well and pick line numbers badly (issue 15 measured it), so in format v2 an edit
names the lines it changes by copying them, and cb finds them in the file (`tools.anchors`). Each
proposal is one block; copied lines and new text go in named parts, each on lines of its own:

    <replace path="example/EXAMPLE.txt" version="VERSION">
    <old>
    the lines to change, copied exactly
    </old>
    <new>
    the lines that replace them (none: a deletion)
    </new>
    </replace>

    <insert path="example/EXAMPLE.txt" version="VERSION">
    <after>                     (or <before>)
    an existing line, copied exactly
    </after>
    <new>
    the lines to insert
    </new>
    </insert>

    <insert path="example/EXAMPLE.txt" version="VERSION" at="top">      (or at="end"; no copied part)
    <new>
    the lines to insert
    </new>
    </insert>

    <create path="example/NEW.txt">
    the whole text of a new file
    </create>

    <rename path="example/EXAMPLE.txt" version="VERSION" from="old_name" to="new_name"/>
                                (every use of the name in the file: tools.renames)

    <run tab="tests">pytest -q</run>

Format v1, the numbered lines cb taught before, is still read (old and saved answers keep applying), never
taught: `<edit path version line="12">` (one line), `<replace path version start end>` (lines start..end,
both included), `<insert path version after="3">` (after line 3, 0 = the top), each with the new text as
its body. `replace` and `insert` are tags of both: a block whose body is made of parts is v2, one whose
body is text is v1.

Rules (the parser in `tools.parse` is the reference; `tools.structure` gives them to a grammar builder):

- `path` is the file as named in its header; `version` is copied from the header (`tools.hashing`).
  Attribute values are quoted ("..." or '...'); bare values (`line=12`) are accepted. Unknown attributes
  are ignored. The long tool names work as tags too (`<search_replace_edit ...>`).
- A part is `<name>`, its text, `</name>`; its text runs to the first `</name>` and is read like a v1
  body: it starts after the newline that ends `<name>`, and when `</name>` sits on its own line the
  newline before it only ends the last line. So `<new>` + newline + `</new>` is empty (a deletion), and
  a blank line between them is one empty line. Written on one line (`<old>x = 1</old>`) it is that text;
  `<new/>` is empty. A Markdown fence wrapping a whole part (or v1 body) is dropped. Only whitespace may
  stand between the parts; their order is free.
- A part's or body's text cannot contain its own closing tag, nor the opening tag of a block: a part or
  block whose closing tag comes after the next block's opening tag is reported as not closed, so one
  forgotten `</new>` never swallows the next block.
- `<replace path="..." version="..." start="3" end="5"/>` (self-closing, v1) has an empty body: a deletion.
- `<rename .../>` has attributes only (`from`, `to`; or `name`, `new_name`), self-closing or closed by
  `</rename>`.
- `<create>` takes its text as its body (a body that is one `<new>` part is read as that part).
- Text outside blocks is free prose and is ignored.

`INSTRUCTIONS` teaches v2 to the model, one example per form, with values that cannot be mistaken for the
user's files (`EXAMPLE_PATH`, `EXAMPLE_VERSION`; the plan names them when a model copies them);
`TOOL_CALL_INSTRUCTIONS` says the same for a request that offers the tools as OpenAI tool calls.
`render()` writes a proposal back as a block (for editing a proposal in $EDITOR and for tests).
'''

from __future__ import annotations

import re

from tools.proposals import (
    AnchoredInsertEdit,
    CreateFile,
    InsertAfterEdit,
    LineReplaceEdit,
    Proposal,
    RenameEdit,
    RunProposal,
    SearchReplaceEdit,
    SingleLineEdit,
)

TAGS = ("replace", "insert", "rename", "create", "run", "edit")
LONG_NAMES = {"search_replace_edit": "replace", "anchored_insert_edit": "insert", "single_line_edit": "edit",
              "line_replace_edit": "replace", "insert_after_edit": "insert", "rename_symbol": "rename",
              "create_file": "create", "run": "run"}
SECTIONS = ("old", "new", "after", "before")  # the parts of a v2 block
EXAMPLE_PATH = "example/EXAMPLE.txt"
EXAMPLE_NEW_PATH = "example/NEW.txt"
EXAMPLE_VERSION = "VERSION"

# An opening tag: <name attr="v" ...>. Group 1 = the name, group 2 = the attribute text.
OPEN_TAG = re.compile(
    r"<(" + "|".join(sorted(set(TAGS) | set(LONG_NAMES), key=len, reverse=True)) + r")\b([^<>]*)>",
    re.IGNORECASE,
)
# One attribute: name = "value" | 'value' | bare.
ATTRIBUTE = re.compile(r"""\s*([A-Za-z_][\w-]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
# The opening of a part, after optional whitespace: <old>, <new/>. Group 1 = the name, group 2 = "/" if empty.
PART_OPEN = re.compile(r"\s*<(" + "|".join(SECTIONS) + r")\s*(/?)>", re.IGNORECASE)


def close_tag(name: str) -> re.Pattern[str]:
    """The closing tag of a block opened as `name` (its long or short name, any case), or of a part."""
    short = LONG_NAMES.get(name.lower(), name.lower())
    names = [short, *(long for long, s in LONG_NAMES.items() if s == short and long != short)]
    return re.compile(r"</\s*(?:" + "|".join(names) + r")\s*>", re.IGNORECASE)


_COPYING = """\
Copy a file's path and version from its header <file path="..." version="...">.
Name the lines you change by copying them from the file exactly: whole lines, with their indentation,
without the line numbers, and enough of them that they occur only once in the file.
Write the new lines exactly as they should appear in the file."""

_RENAMES = """\
To rename a function, class or variable, {} for each file that uses the name: cb renames every use in it
(definition, calls, imports)."""

_NO_PLACEHOLDERS = 'Never write "..." or "rest of code" in place of real lines.'

INSTRUCTIONS = f"""\
To change files, write edit blocks.
{_COPYING}
One block per change:

Replace lines (an empty <new> part deletes them):
<replace path="{EXAMPLE_PATH}" version="{EXAMPLE_VERSION}">
<old>
a line to change
    another line to change, indented as in the file
</old>
<new>
the new lines
</new>
</replace>

Insert lines after an existing line (write <before> instead of <after> to insert before it):
<insert path="{EXAMPLE_PATH}" version="{EXAMPLE_VERSION}">
<after>
an existing line
</after>
<new>
the lines to insert
</new>
</insert>

Insert at the top of a file (at="end" inserts at its end):
<insert path="{EXAMPLE_PATH}" version="{EXAMPLE_VERSION}" at="top">
<new>
the lines to insert
</new>
</insert>

Rename a name at every use in a file:
<rename path="{EXAMPLE_PATH}" version="{EXAMPLE_VERSION}" from="old_name" to="new_name"/>
{_RENAMES.format("write a rename block")}

Create a new file:
<create path="{EXAMPLE_NEW_PATH}">
the whole text of the new file
</create>

Run a shell command (the user confirms first):
<run>echo example</run>

{EXAMPLE_PATH} and {EXAMPLE_VERSION} stand for the path and version of a file you were shown.
{_NO_PLACEHOLDERS}
"""

# For a request that sends the tools as OpenAI `tools` (tool_schemas()) instead of teaching the blocks.
TOOL_CALL_INSTRUCTIONS = f"""\
To change files, call the edit tools (search_replace_edit, anchored_insert_edit, rename_symbol,
create_file; run for a shell command, which the user confirms first).
{_COPYING}
{_RENAMES.format("call rename_symbol once")}
{_NO_PLACEHOLDERS}
"""


def quote_attr(value: str | int) -> str:
    """An attribute value in quotes: double, or single when it holds a double quote."""
    text = str(value)
    return f"'{text}'" if '"' in text else f'"{text}"'


def _text(content: str) -> str:
    """A content as the lines between an opening and a closing tag (the newline before the close ends it)."""
    return content if content.endswith("\n") or not content else content + "\n"


def render(p: Proposal) -> str:
    """A proposal as a block of this format; `parse_proposals(render(p))` gives `p` back."""
    if isinstance(p, RunProposal):
        tab = f" tab={quote_attr(p.tab)}" if p.tab else ""
        return f"<run{tab}>{p.command}</run>"
    if isinstance(p, SearchReplaceEdit):
        return (f"<replace path={quote_attr(p.path)} version={quote_attr(p.version)}>\n"
                f"<old>\n{_text(p.old)}</old>\n<new>\n{_text(p.content)}</new>\n</replace>")
    if isinstance(p, AnchoredInsertEdit):
        at = f" at={quote_attr(p.where)}" if p.where in ("top", "end") else ""
        anchor = f"<{p.where}>\n{_text(p.anchor)}</{p.where}>\n" if not at else ""
        return (f"<insert path={quote_attr(p.path)} version={quote_attr(p.version)}{at}>\n"
                f"{anchor}<new>\n{_text(p.content)}</new>\n</insert>")
    if isinstance(p, RenameEdit):
        return (f"<rename path={quote_attr(p.path)} version={quote_attr(p.version)} from={quote_attr(p.old)} "
                f"to={quote_attr(p.new)}/>")
    if isinstance(p, SingleLineEdit):
        head = f"<edit path={quote_attr(p.path)} version={quote_attr(p.version)} line={quote_attr(p.line)}>"
    elif isinstance(p, LineReplaceEdit):
        head = (f"<replace path={quote_attr(p.path)} version={quote_attr(p.version)} start={quote_attr(p.start)} "
                f"end={quote_attr(p.end)}>")
    elif isinstance(p, InsertAfterEdit):
        head = f"<insert path={quote_attr(p.path)} version={quote_attr(p.version)} after={quote_attr(p.line)}>"
    elif isinstance(p, CreateFile):
        head = f"<create path={quote_attr(p.path)}>"
    else:
        raise TypeError(f"not a proposal: {p!r}")
    tag = head[1:].split(" ", 1)[0]
    return f"{head}\n{_text(p.content)}</{tag}>"
