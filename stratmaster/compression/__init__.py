"""Context compression: shrink retrieved chunks to a token budget, keeping the evidence and its citations."""

from stratmaster.compression.extractive import (
    BudgetTooSmall,
    Chunk,
    CompressedChunk,
    CompressionResult,
    DroppedSentence,
    KeptSentence,
    Tuning,
    compress,
    prune_sentence,
)
from stratmaster.compression.tokens import TokenCounter, default_counter

__all__ = [
    "BudgetTooSmall", "Chunk", "CompressedChunk", "CompressionResult", "DroppedSentence", "KeptSentence",
    "TokenCounter", "Tuning", "compress", "default_counter", "prune_sentence",
]
