"""Knowledge service domain: turning documents into analysed, chunked, embedded evidence.

`text` normalises what was uploaded, `chunking` cuts it into token-sized spans that
citations can point at, `analysis` makes the BM25 tokens and `embedding` the dense
vectors. Nothing here knows about Ray or HTTP.
"""
