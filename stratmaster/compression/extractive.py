"""Query-aware context compression to a token budget, on CPU, keeping citations.

`compress(query, chunks, target_tokens | ratio, mode, counter, embed, tuning)` shrinks retrieved
chunks to a budget in the tokens of `counter` (the embedding model's WordPiece by default).

Budget and accounting
    budget = target_tokens, or ceil(ratio * tokens_before); tokens_before is the sum over
    chunks of counter.count(chunk.text) and tokens_after the same sum over the texts
    returned, so the budget covers exactly what is handed back, separators included (kept
    sentences of a chunk are joined with one space, `SEPARATOR`). `ratio` in the result is
    tokens_after / tokens_before (1.0 when nothing was removed). A budget >= tokens_before
    returns every chunk unchanged. A budget smaller than the shortest unit a mode can return
    (a sentence for extractive, a pruned sentence for prune, for truncate the first word of
    the first chunk that has tokens) raises `BudgetTooSmall`, a ValueError whose message
    names the budget and the smallest possible, so an endpoint can answer 4xx; any larger
    budget returns at least that unit.

Modes
    extractive (default): split every chunk into sentences (`sentence_spans`, char spans of
        the original text), score them, select (below), keep the picked sentences in their
        original order. The budget is never exceeded: selection counts a chunk as its
        sentences' tokens plus the separators', the selected texts are then counted as
        returned, and if that overshoots (a tokenizer that merges across the separator)
        selection is redone recounting each chunk's joined text at every step.
    prune: as extractive, but a sentence costs and returns its pruned text: stopwords (the
        analyzer's Lucene list) and words already seen in the sentence are dropped, while
        numbers, capitalised words (names) and negations ("not", "no", "never", "n't", ...)
        stay. Its span still points at the whole original sentence.
    truncate: the baseline. Chunks in order, each whole while it fits, then the longest
        word-boundary prefix of the first one that does not; later chunks come back empty.

Scoring (extractive and prune); chunks are taken to come in retrieval rank order. Only the
query and the chunks' text and order are used. Knobs are `Tuning`'s fields.
    bm25(s)      = Okapi BM25 of the query's analyzed terms against the sentences, each
                   sentence a document (k1 = 1.2, b = 0.75, `stratmaster.stores.bm25`'s
                   formula, `bm25`), divided by the max
    central(s)   = cosine of s's term-frequency vector to the whole context's, min-max scaled
    relevance(s) = w_bm25 bm25 + w_central central [+ w_cosine cos], divided by its max;
                   without a query (or one sharing no term with the chunks) relevance =
                   central, every chunk scores its prior only and every chunk gets a floor.
                   cos is the min-max scaled cosine of embed(query) and embed(s), computed
                   only when an embedder is given and only for the `embed_limit` sentences
                   with the best lexical relevance (0 for the rest): the int8 ONNX embedder
                   runs one text at a time, ~4 ms each on this CPU, so embedding all ~100
                   sentences of 20 chunks would cost ~400 ms.
    chunk(c)     = (1 - chunk_lexical) prior(c) + chunk_lexical bm25_chunk(c), divided by its
                   max; prior(c) = 1 / (1 + rank(c) / rank_scale) with rank(c) the chunk's
                   0-based position; bm25_chunk is the query's BM25 against the chunks.
    priority(s)  = chunk(c(s)) * ((1 - sentence_weight) + sentence_weight relevance(s))

Selection
    0. The sentence of highest priority that fits the budget, so a budget with room for
       little keeps what matters most.
    1. Floor: chunks that look relevant (share a term with the query; every chunk when there
       is no query), best chunk score first, each get one of their sentences that share a
       term with the query, while the floor uses at most floor_share of the budget. Of the
       sentences within the chunk's fair share (floor budget left / floor chunks left) the
       one maximising (relevance + floor_epsilon) / tokens ** floor_length; if none is that
       short, the shortest that still fits. Coverage of the evidence comes from
       here: at 25% of the tokens, one short sentence from every plausible chunk keeps
       almost every relevant document represented.
    2. The rest of the budget: greedily the sentence maximising
       mmr_lambda * priority(s) - (1 - mmr_lambda) * max sim(s, picked) (MMR, Carbonell &
       Goldstein 1998), sim = cosine of analyzed-term frequency vectors; a sentence that
       does not fit is skipped and smaller ones are still tried.
    A sentence whose sim to an already picked one is >= duplicate_similarity is dropped
    outright as a duplicate (in both phases).

Measured (bench/compression_bench.py, CISI, top 20 hybrid hits to 25% of their tokens;
defaults tuned on the even query ids only; bench/results/compression.json): extractive
keeps 0.97 of the relevant documents (even ids 0.96, held-out odd ids 0.98; truncate 0.37)
with a relevant-token share of 0.42 against truncate's 0.47 (0.90x; even 0.97x, odd 0.83x),
in ~14 ms p50 / ~16-18 ms p95 per query when the machine is quiet. The share cannot reach
truncate's by much: it depends only on which chunks' tokens are kept, keeping only the
rank-1 chunk would give 0.57, and no cheap signal ranked the 20 chunks better than the
retriever did; the floor that buys coverage spends tokens on chunks down the ranking.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from stratmaster.compression.tokens import TokenCounter, default_counter, longest_prefix
from stratmaster.knowledge.analysis import ENGLISH_STOP_WORDS, analyze_many
from stratmaster.knowledge.chunking import sentence_spans
from stratmaster.stores.bm25 import IDF_FLOOR, K1, B

Mode = Literal["extractive", "prune", "truncate"]
Embed = Callable[[Sequence[str]], np.ndarray]

SEPARATOR = " "
NEGATIONS = frozenset({"not", "no", "never", "nor", "none", "nothing", "nobody", "neither", "cannot", "without"})
MODES = ("extractive", "prune", "truncate")


@dataclass(frozen=True, slots=True)
class Tuning:
    """The knobs of extractive selection (see the module docstring).

    Defaults were tuned on CISI's even query ids only (odd ids held out): floor_share and
    floor_length set coverage (floor_share 0.5 -> 0.81, 0.75 -> 0.96 on the even ids) at a cost in
    relevant-token share; over a 108-point grid of chunk_lexical, rank_scale,
    sentence_weight, mmr_lambda and floor_share the share moved only within 0.445-0.460
    (coverage 0.955-0.984), so the rest hardly matter there.
    """

    rank_scale: float = 4.0  # chunk prior 1 / (1 + rank / rank_scale), rank = position in the input
    chunk_lexical: float = 0.3  # chunk score = (1 - w) prior + w * chunk BM25
    sentence_weight: float = 0.2  # priority = chunk score * ((1 - w) + w * sentence relevance)
    floor_share: float = 0.75  # at most this share of the budget goes to the one-sentence-per-chunk floor
    floor_length: float = 2.0  # floor sentence: argmax (relevance + epsilon) / tokens ** floor_length
    floor_epsilon: float = 0.05
    floor_min_score: float = 0.0  # chunks scoring below this (of the best chunk's score) get no floor
    w_bm25: float = 0.9
    w_central: float = 0.1
    w_cosine: float = 0.5  # added when an embedder is given, for the embed_limit lexically best sentences
    embed_limit: int = 8
    mmr_lambda: float = 0.7
    duplicate_similarity: float = 0.9


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
             embed: Embed | None = None, tuning: Tuning | None = None) -> CompressionResult:
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
    return _extractive(query, chunks, budget, mode, counter, embed, tokens_before, tuning or Tuning())


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
_FIRST_WORD = re.compile(r"\S+")


def _truncate(chunks: Sequence[Chunk], budget: int, counter: TokenCounter, tokens_before: int) -> CompressionResult:
    # The smallest text truncation returns: the first chunk that has a word, up to that word
    # (whitespace-only chunks before it come back empty, for nothing).
    first = next((chunk.text for chunk in chunks if _FIRST_WORD.search(chunk.text)), None)
    smallest = counter.count(first[:_FIRST_WORD.search(first).end()]) if first is not None else 0
    if budget < smallest:
        raise BudgetTooSmall(budget, smallest, "truncate")
    out: list[CompressedChunk] = []
    kept: list[KeptSentence] = []
    dropped: list[DroppedSentence] = []
    remaining, exhausted = budget, False
    for chunk in chunks:
        whole = chunk.text.rstrip()
        if exhausted or not whole:
            cut = 0
        elif counter.count(whole) <= remaining:
            cut = len(whole)
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


def _dot(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """matrix @ vector without BLAS: OpenBLAS runs even these small products on every core and
    its threads then spin, doubling the CPU a request burns (12 -> 25 ms per 20 chunks) for no
    gain in wall time, and on a shared 2-core machine that CPU is taken from other requests."""
    return np.einsum("ij,j->i", matrix, vector)


def _minmax(values: np.ndarray) -> np.ndarray:
    span = float(values.max() - values.min()) if len(values) else 0.0
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def _term_matrix(terms: list[list[str]]) -> tuple[np.ndarray, dict[str, int]]:
    """Term frequencies, one row per term list, and the column of each term."""
    vocabulary: dict[str, int] = {}
    for sentence_terms in terms:
        for term in sentence_terms:
            vocabulary.setdefault(term, len(vocabulary))
    matrix = np.zeros((len(terms), max(1, len(vocabulary))), dtype=np.float64)
    for row, sentence_terms in enumerate(terms):
        for term in sentence_terms:
            matrix[row, vocabulary[term]] += 1.0
    return matrix, vocabulary


def bm25(query_terms: Sequence[str], matrix: np.ndarray, vocabulary: dict[str, int]) -> np.ndarray:
    """Okapi BM25 of the query against each row of a term-frequency matrix as a document, divided by the max.

    The formula of `stratmaster.stores.bm25` (k1 = 1.2, b = 0.75, idf floored at 1e-6, a
    query term repeated counts again), vectorised over the handful of rows a request has
    instead of building an index (a parity test checks the two agree).
    """
    scores = np.zeros(len(matrix), dtype=np.float64)
    columns = Counter(vocabulary[term] for term in query_terms if term in vocabulary)
    if not columns or not len(matrix):
        return scores
    lengths = matrix.sum(axis=1)
    average = float(lengths.mean())
    if average <= 0:
        return scores
    norm = K1 * (1 - B + B * lengths / average)
    for column, repeats in columns.items():
        tf = matrix[:, column]
        n = int(np.count_nonzero(tf))
        idf = max(math.log((len(matrix) - n + 0.5) / (n + 0.5)), IDF_FLOOR)
        scores += repeats * idf * tf * (K1 + 1) / (tf + norm)
    top = scores.max()
    return scores / top if top > 0 else scores


@dataclass(frozen=True, slots=True)
class Scores:
    """What selection needs: per sentence relevance and unit vectors, per chunk score and floor eligibility."""

    relevance: np.ndarray  # per sentence, in [0, 1]
    vectors: np.ndarray  # per sentence, unit rows of analyzed-term frequencies (near-duplicates)
    chunk_score: np.ndarray  # per chunk, in [0, 1]
    eligible: np.ndarray  # per chunk: whether it gets a floor sentence
    matches: np.ndarray  # per sentence: whether it may be a floor sentence (shares a term with the query)


def score(query: str | None, sentences: Sequence[_Sentence], chunk_count: int, tuning: Tuning,
          embed: Embed | None = None) -> Scores:
    """Sentence relevance and chunk scores as the module docstring defines them."""
    texts = [sentence.text for sentence in sentences]
    terms = analyze_many(texts)
    query_terms = analyze_many([query])[0] if query else []
    term_matrix, vocabulary = _term_matrix(terms)
    vectors = _unit_rows(term_matrix)
    central = _minmax(_dot(vectors, _unit_rows(term_matrix.sum(0, keepdims=True))[0]))
    owner = np.array([sentence.chunk for sentence in sentences])
    prior = 1.0 / (1.0 + np.arange(chunk_count, dtype=np.float64) / tuning.rank_scale)
    if not any(term in vocabulary for term in query_terms):  # no query, or none of its terms here
        everything = np.ones(chunk_count, dtype=bool), np.ones(len(texts), dtype=bool)
        return Scores(central, vectors, prior / prior.max(), *everything)
    chunk_matrix = np.zeros((chunk_count, term_matrix.shape[1]))
    np.add.at(chunk_matrix, owner, term_matrix)
    chunk_bm25 = bm25(query_terms, chunk_matrix, vocabulary)
    chunk_score = (1 - tuning.chunk_lexical) * prior + tuning.chunk_lexical * chunk_bm25
    sentence_bm25 = bm25(query_terms, term_matrix, vocabulary)
    relevance = tuning.w_bm25 * sentence_bm25 + tuning.w_central * central
    if embed is not None and tuning.embed_limit > 0:
        # Embedding every sentence costs ~4 ms each on this CPU (int8 ONNX, one text per run):
        # only the lexically best `embed_limit` sentences get a cosine, the rest count 0.
        chosen = np.argsort(-relevance, kind="stable")[:tuning.embed_limit]
        embedded = _unit_rows(np.asarray(embed([query or ""] + [texts[i] for i in chosen]), dtype=np.float64))
        cosine = np.zeros(len(texts))
        cosine[chosen] = np.clip(_dot(embedded[1:], embedded[0]), 0.0, None)
        relevance = relevance + tuning.w_cosine * _minmax(cosine)
    relevance = relevance / max(float(relevance.max()), 1e-12)
    chunk_score = chunk_score / max(float(chunk_score.max()), 1e-12)
    return Scores(relevance, vectors, chunk_score, chunk_bm25 > 0, sentence_bm25 > 0)


def _extractive(query: str | None, chunks: Sequence[Chunk], budget: int, mode: Mode, counter: TokenCounter,
                embed: Embed | None, tokens_before: int, tuning: Tuning) -> CompressionResult:
    sentences = _split(chunks, mode, counter)
    if not sentences:  # whitespace only (that a counter may count): nothing to keep, and that fits
        return _result(mode, budget, [CompressedChunk(chunk.id, "", 0) for chunk in chunks], [], [], tokens_before)
    smallest = min(sentence.tokens for sentence in sentences)
    if budget < smallest:
        raise BudgetTooSmall(budget, smallest, mode)
    scores = score(query, sentences, len(chunks), tuning, embed)

    def joined(members: list[int]) -> str:
        return SEPARATOR.join(sentences[index].text for index in members)

    # Select with each chunk's tokens estimated as its sentences' plus the separators' (exact
    # for WordPiece, whose words never merge across a space), then count what was selected; a
    # tokenizer for which that overshoots the budget gets the selection redone, recounting
    # the chunk's joined text at every step (a few ms more).
    separator = counter.count(SEPARATOR)
    picked, duplicate = _select(sentences, scores, budget, tuning,
                                lambda members: sum(sentences[i].tokens for i in members)
                                + separator * (len(members) - 1))
    counts = {chunk: counter.count(joined(members)) for chunk, members in picked.items()}
    if sum(counts.values()) > budget:
        picked, duplicate = _select(sentences, scores, budget, tuning, lambda members: counter.count(joined(members)))
        counts = {chunk: counter.count(joined(members)) for chunk, members in picked.items()}

    out, kept = [], []
    for index, chunk in enumerate(chunks):
        members = picked.get(index, [])
        out.append(CompressedChunk(chunk.id, joined(members), counts.get(index, 0)))
        kept.extend(KeptSentence(chunk.id, sentences[i].start, sentences[i].end, sentences[i].text,
                                 sentences[i].original) for i in members)
    chosen = {i for members in picked.values() for i in members}
    dropped = [DroppedSentence(chunks[s.chunk].id, s.start, s.end, "duplicate" if duplicate[i] else "budget")
               for i, s in enumerate(sentences) if i not in chosen]
    return _result(mode, budget, out, kept, dropped, tokens_before)


def _select(sentences: Sequence[_Sentence], scores: Scores, budget: int, tuning: Tuning,
            count: Callable[[list[int]], int]) -> tuple[dict[int, list[int]], np.ndarray]:
    """The selection of the module docstring: chunk index -> kept sentence indices (in original
    order), and which sentences are near-duplicates of kept ones. `count(members)` gives a
    chunk's tokens with those sentences."""
    owner = np.array([sentence.chunk for sentence in sentences])
    tokens = np.array([sentence.tokens for sentence in sentences], dtype=np.float64)
    priority = scores.chunk_score[owner] * ((1 - tuning.sentence_weight) + tuning.sentence_weight * scores.relevance)
    priority = priority / max(float(priority.max()), 1e-12)
    picked: dict[int, list[int]] = {}
    chunk_tokens: dict[int, int] = {}
    total = 0
    open_ = np.ones(len(sentences), dtype=bool)
    max_similarity = np.zeros(len(sentences), dtype=np.float64)

    def take(best: int, limit: int) -> bool:
        """Keep sentence `best` if its chunk, counted with it, keeps the total within `limit`."""
        nonlocal total
        open_[best] = False
        sentence = sentences[best]
        if max_similarity[best] >= tuning.duplicate_similarity or sentence.tokens > limit - total:
            return False
        members = sorted(picked.get(sentence.chunk, []) + [best])
        tokens_now = count(members)
        if total - chunk_tokens.get(sentence.chunk, 0) + tokens_now > limit:
            return False
        total += tokens_now - chunk_tokens.get(sentence.chunk, 0)
        chunk_tokens[sentence.chunk] = tokens_now
        picked[sentence.chunk] = members
        np.maximum(max_similarity, _dot(scores.vectors, scores.vectors[best]), out=max_similarity)
        return True

    # 0. The single best sentence, so a budget with room for little keeps what matters most.
    fitting = np.flatnonzero(tokens <= budget)
    take(int(fitting[np.argmax(priority[fitting])]), budget)
    # 1. The floor: a sentence from every chunk that looks relevant, best chunks first.
    floor_limit = int(tuning.floor_share * budget)
    density = (scores.relevance + tuning.floor_epsilon) / np.power(np.maximum(tokens, 1.0), tuning.floor_length)
    floor_chunks = [chunk for chunk in np.argsort(-scores.chunk_score, kind="stable").tolist()
                    if scores.eligible[chunk] and scores.chunk_score[chunk] >= tuning.floor_min_score]
    for position, chunk in enumerate(floor_chunks):
        left = floor_limit - total
        candidates = np.flatnonzero((owner == chunk) & scores.matches & open_
                                    & (max_similarity < tuning.duplicate_similarity) & (tokens <= left))
        if not len(candidates):
            continue
        fair = candidates[tokens[candidates] <= left / (len(floor_chunks) - position)]
        if len(fair):  # within the chunk's fair share of what is left: the best by density
            take(int(fair[np.argmax(density[fair])]), floor_limit)
        else:  # nothing that short: the shortest, best first among equals
            take(int(candidates[np.lexsort((-scores.relevance[candidates], tokens[candidates]))[0]]), floor_limit)
    # 2. The rest of the budget: MMR over priority (chunk score times sentence relevance).
    while open_.any() and total < budget:
        mmr = tuning.mmr_lambda * priority - (1 - tuning.mmr_lambda) * max_similarity
        mmr[~open_] = -np.inf
        take(int(np.argmax(mmr)), budget)  # ties: the earliest sentence
    return picked, max_similarity >= tuning.duplicate_similarity
