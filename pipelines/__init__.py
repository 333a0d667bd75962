"""Ray task pipelines (benchmarks, sweeps, batch compression).

Each is a module runnable as `python -m pipelines.<name>` and via
`ray job submit --working-dir . -- python -m pipelines.<name>`; they arrive with the
evals and compression work (issues 4 and 6). Nothing here yet pretends to run.
"""
