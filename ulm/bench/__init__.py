"""`ulm bench`: µLM against HF transformers and llama.cpp on the same model, prompt and threads.

    texts.py    the fixed benchmark text (prefill 512, prompt 64, accuracy 256 tokens)
    measure.py  the measurement protocol shared by every engine (medians, TTFT, peak RSS)
    engines.py  the engines behind one interface: µLM fast/exact, HF bf16/fp32, llama.cpp
    worker.py   one engine's run in its own process (`python -m ulm.bench.worker`)
    run.py      the driver: tokenise once, warm µLM's cache, run each engine's worker
    report.py   the table, the ratios to µLM, the accuracy line
"""
