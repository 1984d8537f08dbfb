"""A Python file as the generator reads it: text, lines, syntax tree and tokens, with exact positions.

The generator finds what to edit with `ast` (what a name is, where a statement starts and ends) and
`tokenize` (where each occurrence of a name, operator or literal is, and what lies in strings and
comments); `PySource` keeps both views of one file and converts their positions to offsets in the text
(ast columns are UTF-8 byte offsets, tokenize columns are characters). Lines are split on the same line
ends Python itself uses, and kept with their ends, so edits keep every byte they do not touch.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Span:
    """A half-open range of character offsets in a text."""

    start: int
    end: int


class PySource:
    """One parsed Python file; raises SyntaxError (or ValueError) for text Python cannot read."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.lines = io.StringIO(text, newline="").readlines()
        self.tree = ast.parse(text)
        self.tokens = list(tokenize.generate_tokens(io.StringIO(text, newline="").readline))
        self._starts = [0]
        for line in self.lines:
            self._starts.append(self._starts[-1] + len(line))

    @property
    def newline(self) -> str:
        """The file's dominant line end."""
        crlf = self.text.count("\r\n")
        return "\r\n" if crlf > self.text.count("\n") - crlf else "\n"

    def line(self, n: int) -> str:
        """Line `n` (1-based) without its end."""
        return self.lines[n - 1].rstrip("\r\n")

    def offset(self, line: int, col: int) -> int:
        """The text offset of (1-based line, character column)."""
        return self._starts[line - 1] + col

    def char_col(self, line: int, byte_col: int) -> int:
        """An ast column (UTF-8 bytes) as a character column."""
        return len(self.lines[line - 1].encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))

    def node_span(self, node: ast.expr | ast.stmt) -> Span:
        assert node.end_lineno is not None and node.end_col_offset is not None
        return Span(self.offset(node.lineno, self.char_col(node.lineno, node.col_offset)),
                    self.offset(node.end_lineno, self.char_col(node.end_lineno, node.end_col_offset)))

    def token_span(self, tok: tokenize.TokenInfo) -> Span:
        return Span(self.offset(*tok.start), self.offset(*tok.end))

    def segment(self, node: ast.expr | ast.stmt) -> str:
        span = self.node_span(node)
        return self.text[span.start:span.end]

    @cached_property
    def names(self) -> list[tokenize.TokenInfo]:
        """Every NAME token (keywords included)."""
        return [t for t in self.tokens if t.type == tokenize.NAME]

    @cached_property
    def _by_line(self) -> dict[int, list[tokenize.TokenInfo]]:
        out: dict[int, list[tokenize.TokenInfo]] = {}
        for tok in self.tokens:
            out.setdefault(tok.start[0], []).append(tok)
        return out

    def tokens_on(self, line: int) -> list[tokenize.TokenInfo]:
        """The tokens that start on `line`."""
        return self._by_line.get(line, [])

    def name_tokens(self, name: str, first: int = 1, last: int | None = None) -> list[tokenize.TokenInfo]:
        """NAME tokens spelling `name`, on lines `first`..`last`."""
        return [t for t in self.names if t.string == name and first <= t.start[0] <= (last or len(self.lines))]

    def mentions(self, name: str) -> dict[str, list[Span]]:
        """Where `name` appears as a whole word inside strings and comments: {"all", "strings", "comments"}
        ("all" = the strings of a module-level `__all__`)."""
        word = re.compile(rf"(?<![\w]){re.escape(name)}(?![\w])")
        all_lines = set()
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                    for t in node.targets):
                all_lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        found: dict[str, list[Span]] = {"all": [], "strings": [], "comments": []}
        for tok in self.tokens:
            if tok.type not in (tokenize.STRING, tokenize.COMMENT):
                continue
            kind = "comments" if tok.type == tokenize.COMMENT else "all" if tok.start[0] in all_lines else "strings"
            base = self.token_span(tok).start
            found[kind] += [Span(base + m.start(), base + m.end()) for m in word.finditer(tok.string)]
        return found

    def functions(self) -> Iterator[tuple[str, FunctionNode]]:
        """(qualified name, node) of every module-level function and method of a module-level class."""
        for node in self.tree.body:
            if isinstance(node, FunctionNode):
                yield node.name, node
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, FunctionNode):
                        yield f"{node.name}.{item.name}", item

    def first_line(self, node: ast.stmt) -> int:
        """The first line of a statement, its decorators included."""
        decorators = getattr(node, "decorator_list", [])
        return min([node.lineno, *(d.lineno for d in decorators)])

    def header_end(self, fn: FunctionNode) -> int:
        """The line of the colon that ends a def's signature."""
        depth = 0
        for tok in self.tokens:
            if tok.start[0] < fn.lineno:
                continue
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth -= 1
            elif tok.type == tokenize.OP and tok.string == ":" and depth == 0:
                return tok.start[0]
        raise ValueError(f"{self.path}: no colon after def {fn.name}")

    def is_blank(self, n: int) -> bool:
        return not self.line(n).strip()

    def is_comment(self, n: int) -> bool:
        return self.line(n).lstrip().startswith("#")


def docstring_node(node: ast.AST) -> ast.Expr | None:
    """The docstring statement of a module, class or function, if it has one."""
    body = getattr(node, "body", None)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[0]
    return None


def is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def replace_spans(text: str, edits: list[tuple[Span, str]]) -> str:
    """`text` with each span replaced (spans must not overlap)."""
    out, pos = [], 0
    for span, new in sorted(edits, key=lambda e: e[0].start):
        out += [text[pos:span.start], new]
        pos = span.end
    return "".join([*out, text[pos:]])


def splice_lines(lines: list[str], first: int, last: int, new: list[str]) -> str:
    """The text of `lines` (kept with their ends) with lines first..last (1-based, inclusive; last =
    first - 1 inserts before `first`) replaced by `new` (given with their ends)."""
    return "".join(lines[:first - 1] + new + lines[last:])
