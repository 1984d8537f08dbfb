"""The generation core, for `ulm serve` and `ulm.Model` alike: one engine that owns the model's backend and
a KV cache of `parallel` rows (slots); continuous batching (prefill into free slots, one batched decode
step over all active slots), per-slot prefix reuse, per-request sampling and stops, and cancellation
within one step. It runs as a worker thread fed by a bounded queue (the server) or in the calling thread
(`Engine.generate`, what `ulm.Model` does).

    types.py     requests, usage, timings, events (Event, Failed), Completion, the engine's errors
    backend.py   the model seam (token ids → last-position logits against cache rows) and µLM's implementation
    slots.py     slots, tickets, the per-request running state, prefix matching
    textout.py   detokenizer + stop strings for one request (ulm.detok and ulm.stops)
    worker.py    Engine: the loop, submit / cancel / stop, and the in-process driver
"""
