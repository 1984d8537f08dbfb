"""The one entry point for printing untrusted text (model output, file content, tab output) to a terminal.

Every character a terminal could interpret (`tools.controls.CONTROLS`) is made visible instead of being
passed through or silently dropped, so a reader can see that something was attempted (RELIABILITY.md §5,
T1–T2), with the stand-ins of `tools.controls`' table (shared with the edit preview and the clipboard
bridge): an escape sequence (OSC 52 clipboard, OSC 2 title, OSC 8 link, cursor moves, queries, DCS/APC)
loses its introducer and shows as inert text, e.g. "␛]52;c;aGk=␇"; C1 codes, bidi overrides and lone
surrogates show as "⟨U+009B⟩". Tab and newline pass; a carriage return passes only as part of "\r\n"
(which becomes "\n"), a lone one shows as "␍".

The mapping works character by character, so it cannot be fooled by splitting a sequence across streamed
chunks; the only state carried between chunks is a trailing "\\r" (is a "\\n" next?) and, for byte input, an
incremental UTF-8 decoder (a character split across chunks is neither lost nor doubled). Rich is not a
sanitiser: render the result as `rich.text.Text` or `Markdown(..., hyperlinks=False)`, never via markup or
`Text.from_ansi`.
"""

from __future__ import annotations

import codecs

from tools.controls import CONTROLS, translation

# str.translate table: every code point to neutralise → its visible form (tab and newline are kept; a lone
# CR becomes "␍"). translate is linear, and on plain ASCII text it runs at C memcpy-like speed.
_TABLE = translation(CONTROLS, keep="\t\n")


def sanitize(text: str) -> str:
    """Neutralise a complete piece of untrusted text (see the module docstring)."""
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    return text.translate(_TABLE)


class StreamSanitizer:
    """Sanitise text that arrives in chunks; `feed` returns what is safe to print now, `flush` the rest.

    Concatenating every `feed` result and the final `flush` equals `sanitize` of the concatenated input,
    wherever the input was split.
    """

    def __init__(self) -> None:
        self._cr_pending = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, chunk: str) -> str:
        if self._cr_pending:
            chunk = "\r" + chunk
            self._cr_pending = False
        if chunk.endswith("\r"):
            chunk = chunk[:-1]
            self._cr_pending = True
        return sanitize(chunk)

    def feed_bytes(self, chunk: bytes) -> str:
        """Like `feed`, for raw bytes (tab output): UTF-8 split across chunks is reassembled."""
        return self.feed(self._decoder.decode(chunk))

    def flush(self) -> str:
        rest = self._decoder.decode(b"", final=True)
        if self._cr_pending:
            rest = "\r" + rest
            self._cr_pending = False
        return sanitize(rest)
