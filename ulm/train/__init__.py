"""Pre-training µLM models on µLM's own components (ulm/layers, ulm/model.Transformer): `ulm train`.

Module layout (one job each; the trainer composes them, `ulm bench train` reuses the step):

    config.py      TrainConfig (optimiser, schedule, batch, precision, cadence) + RunConfig (model + train),
                   read from a preset, a JSON/TOML file and flags (`--set section.field=value`)
    presets.py     named presets: a model shape (CPU-sized `tiny` … SmolLM2's 135M/360M) with its training defaults
    init.py        a trainable Transformer: fresh (seeded init, scaled residual projections) or from --init
    optim.py       AdamW with decay groups (no decay on norms, biases, embeddings); warmup + cosine/WSD/constant
    batches.py     WindowSampler: the split cut into windows of seq_len + 1, shuffled per epoch from the seed;
                   step s takes global sequences [s·B, (s+1)·B), each rank a contiguous slice of them
    step.py        LossModule (summed cross-entropy) and `optimizer_step` (accumulation under DDP's no_sync,
                   autocast, clipping, the learning rate)
    flops.py       FLOPs per token (6·N + 12·L·H·hd·T), peak FLOP/s of the device, MFU
    distributed.py torchrun's environment → process group (gloo on CPU, nccl on GPU), rank, device, reductions
    checkpoint.py  checkpoints: a loadable model directory + optimiser state + trainer state (step, data position,
                   run config, dataset id) + RNG states; the latest; pruning; resume
    logs.py        JSONL metrics, TensorBoard event files, the loss-curve PNG, the console line
    trainer.py     the loop: data → steps → logs → validation → checkpoints, stopping cleanly on a signal,
                   --stop-at or --time-limit

Invariants the tests pin down:
- The global batch (sequences per optimiser step) is fixed by the config, not by the number of ranks: each
  rank runs batch_size / (world · micro_batch) micro-steps, and the loss is the sum over every trained
  target of the global batch divided by their count, so 2 ranks equal 1 process to float tolerance.
- Resume is exact on CPU: weights (fp32), AdamW state, step, data position and RNG states are restored, and
  nothing else carries state across steps, so a stopped-and-resumed run equals the uninterrupted one bit for bit.
- Only rank 0 writes checkpoints and logs.
"""
