"""Checkpoint conversion: µLM model directories, HF and GGUF export, MHA → GQA, (next) LoRA merging.

Module layout (one job each):

    errors.py      ConvertError: a model that cannot take the asked-for form; the message says why
    names.py       canonical tensor names → HF's and llama.cpp's (the loaders' tables, inverted)
    hf_config.py   ModelConfig → an HF config.json dict (Llama, Mistral or Qwen2 form)
    modeldir.py    a µLM model directory: config.json (HF form + the exact µLM config under "ulm_config"),
                   model.safetensors under the canonical names, the tokenizer's files; what `ulm train`
                   writes, `ulm convert gqa` makes and `ulm.load` reads (through ulm/loading/hf.py)
    source.py      any loadable model reference → (config, canonical state dict, tokenizer files)
    gqa.py         MHA → GQA: each group's K/V heads mean-pooled (the GQA paper's uptraining start)
    hf_export.py   a model → an HF safetensors directory that transformers loads as LlamaForCausalLM/Qwen2
    gguf_export.py a model → a GGUF file (F32/F16/BF16, tokenizer metadata, Q/K rows in GGUF's rope order)

`ulm convert` (ulm/commands/convert.py) is a command group with one subcommand per conversion (`gqa`,
`hf`, `gguf`); each reads a model with `source.load_source` and writes with its own module, so
`ulm convert merge-lora` is one more module and one more registration.
"""
