"""The serving engine: one worker thread that owns the model and a KV cache of `parallel` rows (slots), fed by
a bounded queue; continuous batching (prefill into free slots, one batched decode step over all active
slots), per-slot prefix reuse, and cancellation within one step.

    types.py     requests, sampling settings, events (Delta, Finished, Failed), the engine's errors
    backend.py   the model seam (token ids → last-position logits against cache rows) and µLM's implementation
    slots.py     slots, tickets, the per-request running state, prefix matching
    textout.py   detokenizer + stop strings for one request (ulm.detok and ulm.stops)
    worker.py    Engine: the loop, submit / cancel / stop
"""
