"""Query-aware context compression to a token budget, on CPU, keeping citations.

`compress(query, chunks, target_tokens | ratio, mode, counter, embed)` shrinks retrieved
chunks to a budget in the tokens of `counter` (the embedding model's WordPiece by default).

Budget and accounting
    budget = target_tokens, or ceil(ratio * tokens_before); tokens_before is the sum over
    chunks of counter.count(chunk.text) and tokens_after the same sum over the texts
    returned, so the budget covers exactly what is handed back, separators included (kept
    sentences of a chunk are joined with one space, `SEPARATOR`). `ratio` in the result is
    tokens_after / tokens_before (1.0 when nothing was removed). A budget >= tokens_before
    returns every chunk unchanged. A budget smaller than the shortest unit a mode can return
    (a sentence for extractive, a pruned sentence for prune, one token for truncate) raises
    `BudgetTooSmall`, a ValueError whose message names the budget and the smallest
    possible, so an endpoint can answer 4xx.

Modes
    extractive (default): split every chunk into sentences (`sentence_spans`, char spans of
        the original text), score them, pick greedily by MMR, keep the picked sentences in
        their original order. A sentence is kept only if its chunk's text, recounted with it
        inserted, keeps the total within the budget, so the budget is never exceeded.
    prune: as extractive, but a sentence costs and returns its pruned text: stopwords (the
        analyzer's Lucene list) and words already seen in the sentence are dropped, while
        numbers, capitalised words (names) and negations ("not", "no", "never", "n't", ...)
        stay. Its span still points at the whole original sentence.
    truncate: the baseline. Chunks in order, each whole while it fits, then the longest
        word-boundary prefix of the first one that does not; later chunks come back empty.

Scoring (extractive and prune), every component scaled to [0, 1] over the sentences:
    bm25(s)    = Okapi BM25 of the query's analyzed terms against the sentences, each
                 sentence a document (k1 = 1.2, b = 0.75, `Bm25Scorer`), divided by the max
    cos(s)     = cosine(embed(query), embed(s)), min-max scaled over the sentences
    central(s) = cosine of s to the centroid: the mean of the normalised sentence embeddings
                 when `embed` is given, else the whole context's term-frequency vector;
                 min-max scaled
    with a query and embed:  relevance = 0.5 bm25 + 0.4 cos + 0.1 central
    with a query, no embed:  relevance = 0.9 bm25 + 0.1 central
    without a query (or a query with no terms): relevance = central
    The central share breaks ties among sentences the query does not touch in favour of
    those representative of the context. Weights are untuned starting points.

Near-duplicates (MMR, Carbonell & Goldstein 1998)
    pick next the s maximising LAMBDA * relevance(s) - (1 - LAMBDA) * max sim(s, picked),
    LAMBDA = 0.7, sim = cosine of sentence embeddings when `embed` is given, else of
    term-frequency vectors over analyzed terms. A sentence whose sim to an already picked
    one is >= DUPLICATE_SIMILARITY (0.9) is dropped outright as a duplicate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from stratmaster.compression.tokens import TokenCounter, default_counter, longest_prefix
from stratmaster.knowledge.analysis import ENGLISH_STOP_WORDS, analyze_many
from stratmaster.knowledge.chunking import sentence_spans
from stratmaster.stores.bm25 import Bm25Scorer

Mode = Literal["extractive", "prune", "truncate"]
Embed = Callable[[Sequence[str]], np.ndarray]

SEPARATOR = " "
LAMBDA = 0.7
DUPLICATE_SIMILARITY = 0.9
W_BM25_WITH_EMBED, W_COSINE, W_CENTRAL_WITH_EMBED = 0.5, 0.4, 0.1
W_BM25_ALONE, W_CENTRAL_ALONE = 0.9, 0.1
NEGATIONS = frozenset({"not", "no", "never", "nor", "none", "nothing", "nobody", "neither", "cannot", "without"})
MODES = ("extractive", "prune", "truncate")


class BudgetTooSmall(ValueError):
    """The budget is below the smallest text the mode can return; `budget` and `smallest` say by how much."""

    def __init__(self, budget: int, smallest: int, mode: str) -> None:
        super().__init__(
            f"budget of {budget} tokens is smaller than the smallest possible for mode {mode!r}: {smallest} tokens"
        )
        self.budget, self.smallest, self.mode = budget, smallest, mode


@dataclass(frozen=True, slots=True)
class Chunk:
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class KeptSentence:
    """`original == chunk.text[start:end]`; `text` is what was returned for it (pruned in prune mode)."""

    chunk_id: str
    start: int
    end: int
    text: str
    original: str


@dataclass(frozen=True, slots=True)
class DroppedSentence:
    chunk_id: str
    start: int
    end: int
    reason: Literal["budget", "duplicate"]


@dataclass(frozen=True, slots=True)
class CompressedChunk:
    id: str
    text: str
    tokens: int


@dataclass(frozen=True, slots=True)
class CompressionResult:
    mode: Mode
    budget: int
    chunks: list[CompressedChunk]
    sentences: list[KeptSentence]
    dropped: list[DroppedSentence] = field(default_factory=list)
    tokens_before: int = 0
    tokens_after: int = 0
    ratio: float = 1.0


@dataclass(slots=True)
class _Sentence:
    chunk: int  # index into chunks
    start: int
    end: int
    text: str  # as it would be returned (pruned in prune mode)
    original: str
    tokens: int  # of `text`


# --- entry point ---------------------------------------------------------------------------
def compress(query: str | None, chunks: Sequence[Chunk], target_tokens: int | None = None,
             ratio: float | None = None, mode: Mode = "extractive", counter: TokenCounter | None = None,
             embed: Embed | None = None) -> CompressionResult:
    """Compress `chunks` to `target_tokens` (or `ratio` of their tokens); see the module docstring."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if (target_tokens is None) == (ratio is None):
        raise ValueError("give exactly one of target_tokens and ratio")
    if len({chunk.id for chunk in chunks}) != len(chunks):
        raise ValueError("chunk ids must be unique")
    counter = counter or default_counter()
    counts = [counter.count(chunk.text) for chunk in chunks]
    tokens_before = sum(counts)
    if ratio is not None:
        if not 0 < ratio <= 1:
            raise ValueError("ratio must be in (0, 1]")
        budget = math.ceil(ratio * tokens_before)
    else:
        assert target_tokens is not None
        if target_tokens < 0:
            raise ValueError("target_tokens must not be negative")
        budget = target_tokens
    if budget >= tokens_before:
        return _unchanged(mode, budget, chunks, counts)
    if mode == "truncate":
        return _truncate(chunks, budget, counter, tokens_before)
    return _extractive(query, chunks, budget, mode, counter, embed, tokens_before)


def _unchanged(mode: Mode, budget: int, chunks: Sequence[Chunk], counts: list[int]) -> CompressionResult:
    sentences = [KeptSentence(chunk.id, a, b, chunk.text[a:b], chunk.text[a:b])
                 for chunk in chunks for a, b in sentence_spans(chunk.text, 0, len(chunk.text))]
    out = [CompressedChunk(chunk.id, chunk.text, count) for chunk, count in zip(chunks, counts, strict=True)]
    total = sum(counts)
    return CompressionResult(mode, budget, out, sentences, [], total, total, 1.0)


def _result(mode: Mode, budget: int, out: list[CompressedChunk], kept: list[KeptSentence],
            dropped: list[DroppedSentence], tokens_before: int) -> CompressionResult:
    after = sum(chunk.tokens for chunk in out)
    assert after <= budget, (after, budget)
    return CompressionResult(mode, budget, out, kept, dropped, tokens_before, after,
                             after / tokens_before if tokens_before else 1.0)


# --- truncate ------------------------------------------------------------------------------
def _truncate(chunks: Sequence[Chunk], budget: int, counter: TokenCounter, tokens_before: int) -> CompressionResult:
    if budget < 1:
        raise BudgetTooSmall(budget, 1, "truncate")
    out: list[CompressedChunk] = []
    kept: list[KeptSentence] = []
    dropped: list[DroppedSentence] = []
    remaining, exhausted = budget, False
    for chunk in chunks:
        if exhausted:
            cut = 0
        elif counter.count(chunk.text) <= remaining:
            cut = len(chunk.text)
        else:
            cut, exhausted = longest_prefix(chunk.text, remaining, counter), True
        text = chunk.text[:cut].rstrip()
        tokens = counter.count(text) if text else 0
        remaining -= tokens
        out.append(CompressedChunk(chunk.id, text, tokens))
        for a, b in sentence_spans(chunk.text, 0, len(chunk.text)):
            if a < len(text):
                end = min(b, len(text))
                kept.append(KeptSentence(chunk.id, a, end, chunk.text[a:end], chunk.text[a:end]))
                if end < b:
                    dropped.append(DroppedSentence(chunk.id, end, b, "budget"))  # the cut-off tail
            else:
                dropped.append(DroppedSentence(chunk.id, a, b, "budget"))
    return _result("truncate", budget, out, kept, dropped, tokens_before)


# --- extractive and prune ------------------------------------------------------------------
_WORD_CORE = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*$")


def prune_sentence(sentence: str) -> str:
    """Drop stopwords and repeated words, keep numbers, capitalised words and negations.

    Words are whitespace-separated and keep their punctuation; a word is judged by its
    lowercased letters-and-digits core. Returns the sentence unchanged if nothing would stay.
    """
    kept, seen = [], set()
    for word in sentence.split():
        core_match = _WORD_CORE.search(word)
        core = core_match.group().lower().replace("\u2019", "'") if core_match else ""
        if (any(char.isdigit() for char in word) or word.lstrip("\"'([\u201c\u2018")[:1].isupper()
                or core in NEGATIONS or core.endswith("n't")):
            kept.append(word)
        elif core and (core in ENGLISH_STOP_WORDS or core in seen):
            ending = _SENTENCE_END.search(word)
            if ending and kept:  # keep the sentence's end mark: "very very high." -> "very high."
                kept[-1] = kept[-1].rstrip(",;:") + ending.group()
            continue
        else:
            kept.append(word)
        if core:
            seen.add(core)
    return " ".join(kept) if kept else sentence


def _split(chunks: Sequence[Chunk], mode: Mode, counter: TokenCounter) -> list[_Sentence]:
    sentences = []
    for index, chunk in enumerate(chunks):
        for a, b in sentence_spans(chunk.text, 0, len(chunk.text)):
            original = chunk.text[a:b]
            text = prune_sentence(original) if mode == "prune" else original
            sentences.append(_Sentence(index, a, b, text, original, counter.count(text)))
    return sentences


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def _minmax(values: np.ndarray) -> np.ndarray:
    span = float(values.max() - values.min()) if len(values) else 0.0
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def _term_vectors(terms: list[list[str]]) -> np.ndarray:
    vocabulary: dict[str, int] = {}
    for sentence_terms in terms:
        for term in sentence_terms:
            vocabulary.setdefault(term, len(vocabulary))
    matrix = np.zeros((len(terms), max(1, len(vocabulary))), dtype=np.float64)
    for row, sentence_terms in enumerate(terms):
        for term in sentence_terms:
            matrix[row, vocabulary[term]] += 1.0
    return matrix


def _bm25(query_terms: list[str], terms: list[list[str]]) -> np.ndarray:
    scorer = Bm25Scorer()
    for index, sentence_terms in enumerate(terms):
        scorer.add(str(index), "context", sentence_terms)
    scores = np.zeros(len(terms), dtype=np.float64)
    for hit in scorer.search(query_terms, k=len(terms)):
        scores[int(hit.chunk_id)] = hit.score
    top = scores.max() if len(scores) else 0.0
    return scores / top if top > 0 else scores


def score_sentences(query: str | None, texts: list[str], embed: Embed | None) -> tuple[np.ndarray, np.ndarray]:
    """Relevance of each sentence in [0, 1] and the unit vectors MMR compares them with."""
    terms = analyze_many(list(texts))
    query_terms = analyze_many([query])[0] if query else []
    if embed is not None:
        vectors = np.asarray(embed(([query] if query_terms else []) + list(texts)), dtype=np.float64)
        vectors = _unit_rows(vectors)
        query_vector, vectors = (vectors[0], vectors[1:]) if query_terms else (None, vectors)
    else:
        query_vector, vectors = None, _unit_rows(_term_vectors(terms))
    centroid = vectors.mean(axis=0) if embed is not None else _unit_rows(_term_vectors(terms).sum(0, keepdims=True))[0]
    central = _minmax(vectors @ centroid)
    if not query_terms:
        return central, vectors
    bm25 = _bm25(query_terms, terms)
    if query_vector is None:
        return W_BM25_ALONE * bm25 + W_CENTRAL_ALONE * central, vectors
    cosine = _minmax(vectors @ query_vector)
    return W_BM25_WITH_EMBED * bm25 + W_COSINE * cosine + W_CENTRAL_WITH_EMBED * central, vectors


def _extractive(query: str | None, chunks: Sequence[Chunk], budget: int, mode: Mode, counter: TokenCounter,
                embed: Embed | None, tokens_before: int) -> CompressionResult:
    sentences = _split(chunks, mode, counter)
    smallest = min(sentence.tokens for sentence in sentences)  # tokens_before > budget >= 0: not empty
    if budget < smallest:
        raise BudgetTooSmall(budget, smallest, mode)
    relevance, vectors = score_sentences(query, [sentence.text for sentence in sentences], embed)

    picked: dict[int, list[int]] = {}  # chunk index -> sentence indices, in original order
    chunk_tokens = [0] * len(chunks)
    total = 0
    open_ = np.ones(len(sentences), dtype=bool)
    max_similarity = np.zeros(len(sentences), dtype=np.float64)
    while open_.any() and total < budget:
        mmr = LAMBDA * relevance - (1 - LAMBDA) * max_similarity
        mmr[~open_] = -np.inf
        best = int(np.argmax(mmr))  # ties: the earliest sentence
        open_[best] = False
        sentence = sentences[best]
        if max_similarity[best] >= DUPLICATE_SIMILARITY:
            continue
        if sentence.tokens > budget - total:
            continue
        members = sorted(picked.get(sentence.chunk, []) + [best])
        tokens = counter.count(SEPARATOR.join(sentences[index].text for index in members))
        if total - chunk_tokens[sentence.chunk] + tokens > budget:
            continue
        total += tokens - chunk_tokens[sentence.chunk]
        chunk_tokens[sentence.chunk] = tokens
        picked[sentence.chunk] = members
        max_similarity = np.maximum(max_similarity, vectors @ vectors[best])

    out, kept = [], []
    for index, chunk in enumerate(chunks):
        members = picked.get(index, [])
        out.append(CompressedChunk(chunk.id, SEPARATOR.join(sentences[i].text for i in members), chunk_tokens[index]))
        kept.extend(KeptSentence(chunk.id, sentences[i].start, sentences[i].end, sentences[i].text,
                                 sentences[i].original) for i in members)
    chosen = {i for members in picked.values() for i in members}
    duplicate = max_similarity >= DUPLICATE_SIMILARITY  # of a kept sentence, whether or not MMR reached it
    dropped = [DroppedSentence(chunks[s.chunk].id, s.start, s.end, "duplicate" if duplicate[i] else "budget")
               for i, s in enumerate(sentences) if i not in chosen]
    return _result(mode, budget, out, kept, dropped, tokens_before)
