"""Ray task pipelines over the domain library; each runs as `python -m pipelines.<name> --config FILE`
locally and as `ray job submit --working-dir . -- python -m pipelines.<name> ...` on a cluster.

- `retrieval_benchmark`: every configured retrieval setting over a BEIR dataset, queries sharded
  across tasks (configs/benchmarks/);
- `eval_sweep`: a grid of retrieval settings, one task per cell, table, best cells, Pareto front
  (configs/sweeps/).

`compress_corpus` arrives with the compression work (issue 6).
"""
