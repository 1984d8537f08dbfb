"""The characters that must not reach a terminal (or a reader) as they are, and the visible stand-in for each.

The one table that cb's sanitizer (`cb.sanitize`), the clipboard bridge (`cb.clip.sanitize`, which removes
these characters instead) and the edit preview (`tools.preview`) share:

    ESC                                      ␛          an escape sequence loses its introducer: "␛]52;c;…␇"
    the other C0 controls                    ␀ … ␟     U+2400 + code: ␇ BEL, ␈ BS, ␍ CR, ␉ tab, ␊ newline
    DEL                                      ␡
    C1 controls 0x80–0x9f                    ⟨U+009B⟩  8-bit CSI, OSC, ST …
    bidi embeddings, overrides, isolates     ⟨U+202E⟩  U+202A–U+202E, U+2066–U+2069 (Trojan Source)
    lone surrogates U+D800–U+DFFF            ⟨U+D800⟩  no terminal encoding can print them
    invisible format characters              ⟨U+200B⟩  zero-width space and joiners, LRM, RLM, ALM, line and
                                                        paragraph separators, BOM, soft hyphen

`CONTROLS` is what a terminal would act on or cannot print (C0, DEL, C1, bidi, surrogates); `INVISIBLE` only
hides text from a reader, so it is shown where the exact text matters (the diff a user approves) and kept
elsewhere (a ZWJ joins an emoji). Each renderer takes its groups and the characters it keeps (tab,
newline) with `translation`. Stdlib only and importing nothing, so the laptop side (`cb clip listen`)
pays nothing for it.
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
