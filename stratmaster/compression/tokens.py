"""What compression needs to count tokens, and the exact-prefix helper truncation uses.

Every budget is in the tokens of a real tokenizer: the embedding model's WordPiece
(`stratmaster.knowledge.chunking.WordpieceCounter`) by default. Only `count` is needed,
so any object with `count(text) -> int` fits (a target model's tokenizer, a test fake).

A target model's tokenizer (`counter_for(model)`) is its tokenizer.json, found offline only:
the embedding model's own under its names, otherwise the local Hugging Face hub cache. On
this platform that cache is empty and `tiktoken` is not installed, so today only the
embedding model's WordPiece is available; any other name raises `TokenizerUnavailable`
rather than silently counting with a different tokenizer.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
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


# --- the target model's tokenizer ------------------------------------------------------------
EMBEDDING_MODEL_NAMES = frozenset({"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})
EMBEDDING_TOKENIZER = "sentence-transformers/all-MiniLM-L6-v2"


class TokenizerUnavailable(LookupError):
    """No tokenizer for the named model is available offline (nothing is ever downloaded)."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"no tokenizer for model {model!r} is available offline: {reason}; "
                         f"omit `model` to count with the embedding model's WordPiece ({EMBEDDING_TOKENIZER})")
        self.model = model


class TokenizerCounter:
    """Counts with a Hugging Face `tokenizers` tokenizer.json: no special tokens, truncation or padding."""

    def __init__(self, tokenizer_file: Path, name: str) -> None:
        from tokenizers import Tokenizer

        self.name = name
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


def tokenizer_file(model: str, cache_dir: Path | None = None) -> Path:
    """The tokenizer.json counting for `model`: the embedding model's own for its names, else
    the model's file in the local Hugging Face hub cache (`cache_dir`, default the hub's),
    looked up without any network access. Raises `TokenizerUnavailable` when there is none.
    """
    if model.strip().lower() in EMBEDDING_MODEL_NAMES:
        from stratmaster.knowledge.embedding import model_dir

        return model_dir() / "tokenizer.json"
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        found = try_to_load_from_cache(model, "tokenizer.json", cache_dir=cache_dir)
    except HFValidationError:
        raise TokenizerUnavailable(model, "not a Hugging Face model id (namespace/name)") from None
    if not isinstance(found, str):
        raise TokenizerUnavailable(model, "its tokenizer.json is not in the local Hugging Face cache")
    return Path(found)


@functools.lru_cache(maxsize=16)
def counter_for(model: str, cache_dir: Path | None = None) -> TokenizerCounter:
    """A (cached) counter for the named target model; see `tokenizer_file`."""
    return TokenizerCounter(tokenizer_file(model, cache_dir), model)
