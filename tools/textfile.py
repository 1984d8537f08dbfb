"""A text file as bytes split into lines, and the one splice every edit reduces to.

Untouched lines are never decoded and re-encoded: a file is kept as its raw line bytes plus each line's
own terminator, so bytes outside an edit cannot change (no U+FFFD, no newline normalisation). What is kept:

- line terminators: "\\n" and "\\r\\n" end a line (a lone "\\r" is part of the line, as in git and vim);
  new lines get the file's dominant ending, the last new line of a replacement keeps the terminator of
  the line it replaces;
- the presence or absence of a final newline;
- a UTF-8 byte-order mark;
- the encoding: UTF-8 when the file decodes as UTF-8, else cp1252, else latin-1 (which decodes any
  bytes); new text is encoded in that encoding, and an edit it cannot encode is refused.

Refused: binary files (a NUL byte) and files over `MAX_FILE_BYTES`.
"""

from __future__ import annotations

from dataclasses import dataclass

UTF8_BOM = b"\xef\xbb\xbf"
MAX_FILE_BYTES = 8 * 1024 * 1024  # 8 MiB: larger files are refused (they would not fit a prompt anyway)
LF, CRLF = b"\n", b"\r\n"


class NotEditable(ValueError):
    """The bytes are not an editable text file (binary, too large, or new text the encoding cannot hold)."""


def detect_encoding(body: bytes) -> str:
    """The encoding a file's bytes (BOM removed) are read in: utf-8, else cp1252, else latin-1."""
    for encoding in ("utf-8", "cp1252"):
        try:
            body.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    return "latin-1"


@dataclass(frozen=True)
class TextFile:
    """A file's bytes as (BOM, encoding, line contents, line terminators); `to_bytes()` gives them back exactly."""

    bom: bytes
    encoding: str
    lines: tuple[bytes, ...]
    ends: tuple[bytes, ...]  # b"\n" or b"\r\n"; only the last line may have b"" (no final newline)

    @classmethod
    def parse(cls, data: bytes) -> TextFile:
        """Split `data` into lines; raises NotEditable for binary or oversized content."""
        if len(data) > MAX_FILE_BYTES:
            raise NotEditable(f"is {len(data):,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for edits")
        if b"\x00" in data:
            raise NotEditable("looks binary (it contains NUL bytes)")
        bom = UTF8_BOM if data.startswith(UTF8_BOM) else b""
        body = data[len(bom):]
        parts = body.split(LF)
        lines: list[bytes] = []
        ends: list[bytes] = []
        for part in parts[:-1]:
            if part.endswith(b"\r"):
                lines.append(part[:-1])
                ends.append(CRLF)
            else:
                lines.append(part)
                ends.append(LF)
        if parts[-1]:
            lines.append(parts[-1])
            ends.append(b"")
        return cls(bom, detect_encoding(body), tuple(lines), tuple(ends))

    def to_bytes(self) -> bytes:
        return self.bom + b"".join(line + end for line, end in zip(self.lines, self.ends, strict=True))

    def __len__(self) -> int:
        return len(self.lines)

    def text_lines(self) -> list[str]:
        """The lines decoded (for display and prompts; never written back)."""
        return [line.decode(self.encoding) for line in self.lines]

    def newline(self) -> bytes:
        """The dominant line ending: CRLF when most lines end so, else LF."""
        crlf = self.ends.count(CRLF)
        return CRLF if crlf > self.ends.count(LF) else LF

    def encode(self, text: str) -> bytes:
        """Encode new text in the file's encoding; raises NotEditable when it cannot hold it."""
        try:
            return text.encode(self.encoding)
        except UnicodeEncodeError as exc:
            bad = text[exc.start:exc.end]
            raise NotEditable(f"is {self.encoding}; the new text has {bad!r}, which it cannot hold") from None

    def splice(self, start: int, end: int, new: list[str], newline: bytes | None = None) -> TextFile:
        """Replace lines [start, end) (0-based, half-open) with `new`; `newline` is the ending for new lines."""
        if not 0 <= start <= end <= len(self.lines):
            raise IndexError(f"lines {start + 1}-{end} are outside a file of {len(self.lines)} lines")
        nl = newline or self.newline()
        lines, ends = list(self.lines), list(self.ends)
        new_b = [self.encode(text) for text in new]
        if new_b:
            new_ends = [nl] * len(new_b)
            if end > start:
                new_ends[-1] = ends[end - 1]
            elif start == len(lines) and lines and ends[-1] == b"":
                # Appending after a last line with no final newline: that line gains one, the file still lacks one.
                ends[-1] = nl
                new_ends[-1] = b""
            lines[start:end], ends[start:end] = new_b, new_ends
        else:
            lost_final = end == len(lines) and end > start and ends[-1] == b""
            del lines[start:end], ends[start:end]
            if lost_final and lines:
                ends[-1] = b""  # deleting the last lines keeps the file without a final newline
        return TextFile(self.bom, self.encoding, tuple(lines), tuple(ends))
