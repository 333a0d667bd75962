"""Property tests (hypothesis) for context compression, over arbitrary texts, budgets and modes.

For every input, either `BudgetTooSmall` is raised, and then truly nothing the mode returns
fits (the smallest unit, recomputed here independently, exceeds the budget), or:
- the returned texts never exceed the budget, recounted with the same counter;
- every kept sentence maps back exactly: chunk.text[start:end] == original, in order, and
  the chunk's returned text is made of them;
- something is returned (the smallest unit fits, so at least that is kept).

Most examples count with cheap fake counters (words and every whitespace character,
characters, or a superadditive one that makes selection's per-sentence estimate overshoot,
so the exact recounting path runs) so many run quickly; some count with the embedding model's real WordPiece
tokenizer (tokenizer.json only, the ONNX model is never loaded).
"""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stratmaster.compression import BudgetTooSmall, Chunk, compress, prune_sentence
from stratmaster.compression.extractive import SEPARATOR
from stratmaster.knowledge.chunking import WordpieceCounter, sentence_spans

MODES = ("extractive", "prune", "truncate")
_WORD = re.compile(r"\S+")


class WordsAndSpacesCounter:
    """Every run of non-space characters and every whitespace character is a token: separators cost."""

    name = "words+spaces"

    def count(self, text: str) -> int:
        return len(re.findall(r"\S+|\s", text))


class CharCounter:
    name = "chars"

    def count(self, text: str) -> int:
        return len(text)


class SuperadditiveCounter:
    """Joined texts cost more than their parts: selection's estimate overshoots, forcing the exact redo."""

    name = "superadditive"

    def count(self, text: str) -> int:
        return int(len(text) ** 1.2)


_WORDPIECE: WordpieceCounter | None = None


def wordpiece() -> WordpieceCounter:
    global _WORDPIECE
    if _WORDPIECE is None:
        _WORDPIECE = WordpieceCounter()
    return _WORDPIECE


# --- strategies ----------------------------------------------------------------------------
WORDS = ("market", "share", "Revenue", "grew", "not", "never", "the", "of", "Acme", "42%", "3.5", "e.g.", "Dr.",
         "U.S.", "don't", "naïve", "Straße", "数据", "🙂", "co-op", "(see", "below)", "\"quoted\"", "it\u2019s")
PUNCTUATION = (".", "!", "?", "...", ".\u201d", ",", ";", ":", "", ". ", ".\n", "\n\n", "\u2026")

word = st.one_of(st.sampled_from(WORDS), st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)),
                                                 min_size=1, max_size=8))
sentence = st.builds(lambda words, end: " ".join(words) + end, st.lists(word, min_size=1, max_size=12),
                     st.sampled_from(PUNCTUATION))
structured_text = st.builds(lambda parts, glue: glue.join(parts), st.lists(sentence, min_size=0, max_size=6),
                            st.sampled_from((" ", "  ", "\n", " \t", "")))
raw_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120)
chunk_text = st.one_of(structured_text, structured_text, raw_text)
chunks_strategy = st.lists(chunk_text, min_size=1, max_size=6).map(
    lambda texts: [Chunk(f"c{index}", text) for index, text in enumerate(texts)])
query_strategy = st.one_of(st.none(), st.just(""), sentence, st.sampled_from(("revenue growth", "Acme market share")))


# --- the independent oracle ----------------------------------------------------------------
def smallest_unit(chunks: list[Chunk], mode: str, counter) -> int:
    """Tokens of the smallest non-empty text the mode can return, computed without the compressor
    (0 when it can return nothing but empty texts: whitespace only)."""
    if mode == "truncate":
        first = next((chunk.text for chunk in chunks if _WORD.search(chunk.text)), None)
        return counter.count(first[:_WORD.search(first).end()]) if first is not None else 0
    units = [chunk.text[a:b] for chunk in chunks for a, b in sentence_spans(chunk.text, 0, len(chunk.text))]
    units = [prune_sentence(unit) for unit in units] if mode == "prune" else units
    return min((counter.count(unit) for unit in units), default=0)


def check(chunks: list[Chunk], query: str | None, mode: str, counter, budget: int | None = None,
          ratio: float | None = None) -> None:
    before = sum(counter.count(chunk.text) for chunk in chunks)
    target = budget if budget is not None else math.ceil(ratio * before)
    smallest = smallest_unit(chunks, mode, counter)
    try:
        result = compress(query, chunks, target_tokens=budget, ratio=ratio, mode=mode, counter=counter)
    except BudgetTooSmall as error:
        # raised only when truly nothing fits
        assert target < before, "a budget covering everything never raises"
        assert target < smallest
        assert error.budget == target and error.smallest == smallest and error.mode == mode
        return
    assert result.budget == target
    returned = [counter.count(chunk.text) for chunk in result.chunks]
    assert returned == [chunk.tokens for chunk in result.chunks]
    assert sum(returned) == result.tokens_after
    assert result.tokens_after <= target, "the budget is never exceeded"
    assert result.tokens_before == before
    assert [chunk.id for chunk in result.chunks] == [chunk.id for chunk in chunks]
    by_id = {chunk.id: chunk.text for chunk in chunks}
    for kept in result.sentences:
        assert by_id[kept.chunk_id][kept.start:kept.end] == kept.original
    for chunk, compressed in zip(chunks, result.chunks, strict=True):
        kept = [s for s in result.sentences if s.chunk_id == chunk.id]
        assert all(a.end <= b.start for a, b in zip(kept, kept[1:], strict=False)), "in original order"
        if target >= before:
            assert compressed.text == chunk.text
        elif mode == "truncate":
            assert chunk.text.startswith(compressed.text)
        else:
            assert compressed.text == SEPARATOR.join(s.text for s in kept)
            for s in kept:
                assert s.text == (prune_sentence(s.original) if mode == "prune" else s.original)
    if target < before:
        assert target >= smallest
        words = any(_WORD.search(chunk.text) for chunk in chunks)
        assert any(chunk.text for chunk in result.chunks) == words, "the smallest unit fits: something is kept"


# --- properties ----------------------------------------------------------------------------
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REAL = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("counter", [WordsAndSpacesCounter(), CharCounter(), SuperadditiveCounter()],
                         ids=lambda c: c.name)
@pytest.mark.parametrize("mode", MODES)
@FAST
@given(chunks=chunks_strategy, query=query_strategy, data=st.data())
def test_budget_spans_and_too_small_with_fake_counters(counter, mode, chunks, query, data):
    before = sum(counter.count(chunk.text) for chunk in chunks)
    budget = data.draw(st.integers(0, before + 3), label="target_tokens")
    check(chunks, query, mode, counter, budget=budget)


@pytest.mark.parametrize("mode", MODES)
@REAL
@given(chunks=chunks_strategy, query=query_strategy, data=st.data())
def test_budget_spans_and_too_small_with_wordpiece(mode, chunks, query, data):
    counter = wordpiece()
    before = sum(counter.count(chunk.text) for chunk in chunks)
    budget = data.draw(st.integers(0, before + 3), label="target_tokens")
    check(chunks, query, mode, counter, budget=budget)


@pytest.mark.parametrize("mode", MODES)
@REAL
@given(chunks=chunks_strategy, query=query_strategy,
       ratio=st.floats(min_value=0.01, max_value=1.0, allow_nan=False, exclude_min=False))
def test_ratio_budgets_with_wordpiece(mode, chunks, query, ratio):
    assume(sum(wordpiece().count(chunk.text) for chunk in chunks) > 0)
    check(chunks, query, mode, wordpiece(), ratio=ratio)


@REAL
@given(chunks=chunks_strategy, query=query_strategy, data=st.data())
def test_semantic_path_keeps_the_same_guarantees(chunks, query, data):
    """With an embedder (a cheap fake), selection changes but budgets and spans hold the same."""
    import numpy as np

    def embed(texts):
        return np.array([[len(text) % 7 + 1.0, text.count(" ") + 1.0, 1.0] for text in texts])

    counter = WordsAndSpacesCounter()
    before = sum(counter.count(chunk.text) for chunk in chunks)
    budget = data.draw(st.integers(0, before + 3), label="target_tokens")
    try:
        result = compress(query, chunks, target_tokens=budget, counter=counter, embed=embed)
    except BudgetTooSmall as error:
        assert error.smallest == smallest_unit(chunks, "extractive", counter) > budget
        return
    assert sum(counter.count(chunk.text) for chunk in result.chunks) == result.tokens_after
    assert result.tokens_after <= budget or budget >= before
    by_id = {chunk.id: chunk.text for chunk in chunks}
    assert all(by_id[s.chunk_id][s.start:s.end] == s.original for s in result.sentences)
