"""`cb bench edits`: the measure of edit quality, a corpus of edit tasks run through cb's real path.

A task is files + a request (as a user would type it) + a check (the exact expected bytes, with the few
alternatives a user would also accept, and/or a test script run on the edited copy). The runner shows the
files as cb shows them, sends the request to any OpenAI-compatible server, and parses, plans and applies the
answer with `tools` in a fresh temp copy per task; the scorer then says, per task, whether the answer was
well-formed, applicable and correct, and whether anything was written outside the copy.

Modules, one job each:

    tasks      the data model (Task, Check, SourceUnit) and the split rule (held-out by a stable hash of
               the task's source unit, ~50%); `overlaps_heldout()` for training-data makers
    generate   the generator: deterministic, seeded edit tasks from any Python source (tiers literal,
               rename, import, function, delete, rewrite, bugfix, two-file; layout variants crlf, tabs,
               no-eol); `ulm data edits` calls it on other code
    corpus     the benchmark's corpus: stdlib excerpts and hand-written projects (package data under
               data/), the generator's tasks on them, the hand-written tasks; selection by split and tier
    wiring     the one module that touches cb's prompt assembly and the tools package (so a change of the
               edit format or of the context assembly is adapted in one place); reference answers and
               training transcripts
    score      checks, the escape guard, per-task scoring and per-tier aggregation
    run        the runner: server connection, one task at a time, the extra-body hook, progress
    report     the table (rich on a terminal, plain in a pipe) and the JSON

    from cb.editbench import corpus, run, report
    tasks = corpus.select(corpus.load(), split="dev", tiers=(), limit=20)
    results = run.run_tasks(tasks, run.connect(settings), max_tokens=512, temperature=0.0)
    print(report.table(results, ...))
"""
