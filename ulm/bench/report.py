"""How `ulm bench` shows its results: a table of every engine's figures, then µLM fast mode's ratio to
each other engine, oriented so that > 1 always means µLM is better (faster, or lighter)."""

from __future__ import annotations

from typing import Any

from ulm.bench.engines import LABELS

# (key, column title, format, higher is better)
METRICS = (
    ("load_s", "load s", "{:.2f}", False),
    ("prefill_tok_s", "prefill tok/s", "{:.0f}", True),
    ("decode_tok_s", "decode tok/s", "{:.1f}", True),
    ("ttft_ms", "TTFT ms", "{:.0f}", False),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}", False),
)
ANCHOR = "ulm"


def _grid(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _label(name: str, res: dict[str, Any]) -> str:
    """An engine's row label; µLM fast's names its weights ("int4", "GGUF blocks") where the run said."""
    label = LABELS.get(name, name)
    return f"{label} ({res['weights']})" if "weights" in res else label


def ratio(anchor: float, other: float, higher_is_better: bool) -> float:
    """How many times better µLM's figure is than the other engine's (> 1: µLM better)."""
    return anchor / other if higher_is_better else other / anchor


def render(results: dict[str, dict[str, Any]], *, model: str, threads: int, repeats: int, new_tokens: int) -> str:
    """The human-readable report: figures table, ratios table, accuracy line, and what was measured."""
    header = ["engine", *(title for _, title, _, _ in METRICS)]
    rows = [header]
    skipped = []
    for name, res in results.items():
        if "error" in res:
            skipped.append(f"  {name}: {res['error']}")
            continue
        rows.append([_label(name, res), *(fmt.format(res[key]) for key, _, fmt, _ in METRICS)])
    out = [f"model {model}, {threads} threads; medians of {repeats} runs, engines interleaved (the machine is "
           f"shared and noisy: compare engines within one run); prefill 512 tokens, decode {new_tokens} new "
           "tokens after a 64-token prompt", "", _grid(rows)]
    anchor = results.get(ANCHOR, {})
    if "error" not in anchor and anchor:
        ratio_rows = [["µLM fast vs", *(title.split(" ")[0] for _, title, _, _ in METRICS)]]
        for name, res in results.items():
            if name == ANCHOR or "error" in res:
                continue
            ratio_rows.append([_label(name, res),
                               *(f"{ratio(anchor[k], res[k], hib):.2f}×" for k, _, _, hib in METRICS)])
        if len(ratio_rows) > 1:
            out += ["", "ratios: > 1 means µLM fast is better (faster, or lighter)", _grid(ratio_rows)]
        if "top1_agreement" in anchor:
            code = anchor.get("top1_agreement_code")
            out += ["", "fast-mode accuracy: top-1 agreement with the exact fp32 mode under teacher forcing over "
                        f"256 tokens (one a step, as decoding runs): {anchor['top1_agreement']:.1%} on the prose "
                        "and code text" + ("" if code is None else f", {code:.1%} on the code text")]
    if skipped:
        out += ["", "not run:", *skipped]
    return "\n".join(out)
