"""The characters that must not reach a terminal (or a reader) as they are, and the visible stand-in for each:
the one table that cb's sanitizer (`cb.sanitize`), the clipboard bridge (`cb.clip.sanitize`, which removes
them instead) and the edit preview (`tools.preview`) share.

`CONTROLS`, what a terminal would act on or cannot print: C0 (ESC → "␛", the rest → "␀" … "␟"), DEL → "␡",
C1 → "⟨U+009B⟩", the bidi embeddings, overrides and isolates of Trojan Source → "⟨U+202E⟩", lone surrogates
→ "⟨U+D800⟩". `INVISIBLE`, what only hides text from a reader (zero-width space and joiners, LRM, RLM,
ALM, line and paragraph separators, BOM, soft hyphen → "⟨U+200B⟩"): shown where the exact text matters (a
diff to approve), kept elsewhere (a ZWJ joins an emoji). Each renderer takes its groups and the characters
it keeps (tab, newline) with `translation`. Stdlib only and importing nothing (`cb clip listen` stays light).
"""

from __future__ import annotations

from collections.abc import Iterable

ESC, DEL = 0x1B, 0x7F
BIDI = frozenset((*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
CONTROLS = frozenset((*range(0x20), DEL, *range(0x80, 0xA0), *BIDI, *range(0xD800, 0xE000)))
INVISIBLE = frozenset((*range(0x200B, 0x2010), 0x2028, 0x2029, 0x061C, 0xFEFF, 0x00AD))


def _stand_in(code: int) -> str:
    if code == ESC:
        return "␛"
    if code < 0x20:
        return chr(0x2400 + code)
    if code == DEL:
        return "␡"
    return f"⟨U+{code:04X}⟩"


STAND_INS: dict[int, str] = {code: _stand_in(code) for code in sorted(CONTROLS | INVISIBLE)}


def translation(*groups: Iterable[int], keep: str = "") -> dict[int, str]:
    """A `str.translate` table: every code point of `groups` to its stand-in, except the characters in `keep`."""
    kept = {ord(c) for c in keep}
    return {code: STAND_INS[code] for group in groups for code in group if code not in kept}
