"""What compression needs to count tokens, and the exact-prefix helper truncation uses.

Every budget is in the tokens of a real tokenizer: the embedding model's WordPiece
(`stratmaster.knowledge.chunking.WordpieceCounter`) by default. Only `count` is needed,
so any object with `count(text) -> int` fits (a target model's tokenizer, a test fake).
"""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

_WORD_END = re.compile(r"\S+")


@runtime_checkable
class TokenCounter(Protocol):
    def count(self, text: str) -> int:
        """Tokens in the text, without the model's special tokens."""


def default_counter() -> TokenCounter:
    """The embedding model's tokenizer (loads tokenizer.json once per call; keep the result)."""
    from stratmaster.knowledge.chunking import WordpieceCounter

    return WordpieceCounter()


def longest_prefix(text: str, max_tokens: int, counter: TokenCounter) -> int:
    """End of the longest prefix `text[:end]`, cut after a whole word, with at most `max_tokens` tokens.

    Binary search over word ends, so the count is exact for the text as returned (token
    counts of prefixes grow with the prefix for WordPiece-like tokenizers). Returns 0 when
    not even the first word fits.
    """
    ends = [match.end() for match in _WORD_END.finditer(text)]
    low, high, best = 0, len(ends) - 1, 0
    while low <= high:
        middle = (low + high) // 2
        if counter.count(text[:ends[middle]]) <= max_tokens:
            best, low = ends[middle], middle + 1
        else:
            high = middle - 1
    return best
