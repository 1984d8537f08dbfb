"""`ulm convert`: a command group, one subcommand per conversion (see ulm/convert/): `gqa` (MHA → GQA by
mean-pooling K/V heads), `hf` (an HF safetensors directory), `gguf` (a GGUF file). Each reads its source with
`ulm.convert.source.load_source`, so a new conversion (`merge-lora`) is one function and one registration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ulm.commands.generate import user_errors

if TYPE_CHECKING:
    from ulm.convert.source import Source

app = typer.Typer(help="Convert models: MHA → GQA, export to HF safetensors or GGUF.", no_args_is_help=True)

SOURCE = typer.Argument(..., help="Model to read: a µLM checkpoint or run dir, an HF directory, a .gguf file or "
                        "a short name (see `ulm models`).")
OUT_DIR = typer.Option(..., "--out", "-o", help="Directory to write (new or empty).")
OUT_FILE = typer.Option(..., "--out", "-o", help="The .gguf file to write.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace what is at --out.")


def _load(ref: str) -> Source:
    from ulm.convert.source import load_source

    return load_source(ref)


@app.command("gqa")
def gqa(
    source: str = SOURCE,
    kv_heads: int = typer.Option(..., "--kv-heads", min=1, help="Key/value heads of the result (divides the "
                                 "model's own)."),
    out: Path = OUT_DIR,
    overwrite: bool = OVERWRITE,
) -> None:
    """Fewer key/value heads: each group's K/V heads mean-pooled into one (the GQA paper's uptraining start).

    The result is a µLM model directory; uptrain it with `ulm train --init OUT`.

    \b
    Examples:
      ulm convert gqa runs/mha --kv-heads 2 --out runs/gqa2
      ulm train --init runs/gqa2 --preset tiny --data data/stdlib --out runs/gqa2-uptrained --steps 200
    """
    from ulm.convert.gqa import to_gqa
    from ulm.convert.hf_export import prepare_out
    from ulm.convert.modeldir import write_model_dir

    with user_errors():
        src = _load(source)
        config, state = to_gqa(src.config, src.state, kv_heads)
        prepare_out(out, overwrite)
        write_model_dir(out, config, state, src.tokenizer_dir)
    typer.echo(f"wrote {out}: {src.config.n_kv_heads} → {kv_heads} key/value heads "
               f"({config.n_heads} query heads, {config.n_rep} per group)")


@app.command("hf")
def hf(
    source: str = SOURCE,
    out: Path = OUT_DIR,
    dtype: str = typer.Option("float32", "--dtype", help="float32, float16 or bfloat16."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Export to an HF safetensors directory (Llama, Mistral or Qwen2 form) that transformers loads.

    \b
    Examples:
      ulm convert hf runs/tiny --out export/tiny-hf
      ulm convert hf smollm2-135m --out export/smollm2 --dtype bfloat16
    """
    from ulm.convert.hf_export import export_hf

    with user_errors():
        export_hf(_load(source), out, dtype, overwrite)
    typer.echo(f"wrote {out} (transformers: AutoModelForCausalLM.from_pretrained('{out}'))")


@app.command("gguf")
def gguf(
    source: str = SOURCE,
    out: Path = OUT_FILE,
    ftype: str = typer.Option("f16", "--type", help="Tensor type: f32, f16 or bf16 (norms and biases stay f32)."),
    tokenizer: bool = typer.Option(True, "--tokenizer/--no-tokenizer", help="Put the tokenizer into the file."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Export to a GGUF file (llama or qwen2 architecture) for llama.cpp, Ollama and `ulm`.

    \b
    Examples:
      ulm convert gguf runs/tiny --out export/tiny.gguf --type f32
      ulm convert gguf export/smollm2 --out smollm2-bf16.gguf --type bf16
    """
    from ulm.convert.gguf_export import export_gguf

    with user_errors():
        export_gguf(_load(source), out, ftype, tokenizer, overwrite)
    typer.echo(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
