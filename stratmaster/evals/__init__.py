"""Offline evaluation of retrieval: IR measures defined as trec_eval defines them, and
loaders for the test collections they are computed on.

`ir_metrics` scores runs against relevance judgments (qrels) and reads and writes TREC
files; `datasets` loads BEIR-format collections. Nothing here knows about Ray or HTTP.
"""
