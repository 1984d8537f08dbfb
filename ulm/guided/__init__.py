"""Constrained decoding with llguidance: a request's grammar decides which tokens it may sample.

    grammars = Grammars(backend.tokenizer, backend.vocab_size, backend.eos_ids)   # once, at server start
    constraint = grammars.lark(text)          # or .gbnf(text), .json_schema(schema): once per request
    Request(prompt, constraint=constraint)    # the engine masks that row's logits every step

- `ulm.guided.grammars`: `Grammars`, the tokenizer prepared for llguidance (its token trie, ~0.7 s for a 49k
  vocabulary) and the compilers of Lark (llguidance's dialect), GBNF (llama.cpp's) and JSON Schema grammars;
  `GrammarError` for a grammar llguidance refuses; `is_gbnf(text)` tells the two text dialects apart.
- `ulm.guided.constraint`: `Constraint`, one request's parser state: the mask of the tokens it allows next,
  advanced by each sampled token, done when the grammar can take nothing more.
- The engine computes a step's masks (`ulm.engine.masks`) while the forward runs and hands them to the
  sampler (`ulm.sampling`, native and torch paths), so constrained and unconstrained rows share a batch.

llguidance is imported inside these modules: without it installed, `ulm serve` runs and refuses grammars.
"""
