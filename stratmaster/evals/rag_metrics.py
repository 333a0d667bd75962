"""RAG answer quality without an LLM judge: lexical support, rank-aware context scores,
citation checks and embedding relevancy.

Everything here is deterministic and cheap, so it can run on every case of every sweep;
its blind spot is paraphrase (a claim restated in other words scores as unsupported) and
it never credits reasoning across chunks. A judge-based variant belongs in the router
service, not here.

**Support** ("entailment-lite"). A sentence *s* is supported by a chunk *c* when all of

1. coverage(s, c) >= `threshold` (default `SUPPORT_THRESHOLD` = 0.6), where coverage is
   the share of the distinct content terms of *s* that also occur in *c*. Content terms
   are the project analyzer's terms (`knowledge.analysis.analyze`: lowercased, Lucene's
   stopwords dropped, Snowball-stemmed), minus `FUNCTION_WORDS` (pronouns, auxiliaries,
   modals, connectives: they join a claim but assert nothing a source must contain),
   minus negation cues and words holding digits (both are checked exactly, below). A
   sentence without content terms has coverage 0: it says nothing that can be checked;
2. every number written in *s* is written in *c*, compared by value after dropping
   thousands separators ("1,200" = "1200", "4.50" = "4.5", "18%" = "18"). Numbers are
   where a fluent answer goes wrong while sharing every word with its source ("churn
   fell to 4%" against "churn fell to 6%"), so one wrong number fails the sentence
   outright instead of costing one term of coverage. No unit conversion, no signs, no
   number words ("4.5m" is not "4,500,000"; "three" is an ordinary term);
3. *s* and the sentence of *c* that shares most content terms with it (any of them, on a
   tie) agree on polarity: both carry a negation cue (`NEGATIONS`, or a word ending in
   "n't") or neither does. Adding or dropping a "not" inverts a claim while changing
   one stopword, which term overlap alone cannot see. Polarity is per sentence, not per
   clause: "prices rose but churn did not" is negated as a whole.

Against a set of chunks, a sentence's *best chunk* is the supporting chunk with the
highest coverage or, when none supports it, the chunk with the highest coverage (whose
`missing_numbers` and `negation_mismatch` then say why it fails); its *support score*
is that chunk's coverage. Ties go to the chunk listed first.

**Measures** (each in [0, 1] except answer relevancy; None where the denominator is empty):

- faithfulness: supported sentences / answer sentences, each sentence checked against
  the chunks the answer cites anywhere (a claim grounded in a chunk cited elsewhere in
  the answer is faithful, but not correctly cited);
- context precision: rank-aware precision of the retrieved contexts, as in RAGAS: the
  mean of precision@k over the ranks k holding a judged-relevant context; 1 exactly when
  every relevant retrieved context precedes every irrelevant one, 0 when none is relevant;
- context recall: judged-relevant contexts retrieved / judged-relevant contexts;
- citation precision: (sentence, cited chunk) pairs where that chunk supports that
  sentence / all such pairs (a citation is "right" when its chunk alone supports its
  sentence, after ALCE, Gao et al. 2023, with lexical support instead of NLI);
- citation recall: sentences citing at least one chunk that supports them / sentences
  that some retrieved context supports (sentences nothing supports are faithfulness's
  failure, not a citation's);
- answer relevancy: cosine similarity of the question's and the answer's embeddings, in
  [-1, 1] (in practice [0, 1] for sentence-transformer models); the embedding model only
  sees its first tokens (all-MiniLM-L6-v2: 254), so it judges the opening of a long answer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from stratmaster.knowledge.analysis import analyze
from stratmaster.knowledge.chunking import sentence_spans

SUPPORT_THRESHOLD = 0.6

NEGATIONS: frozenset[str] = frozenset({
    "not", "no", "never", "none", "nor", "neither", "nobody", "nothing", "nowhere", "cannot",
})

FUNCTION_WORDS: frozenset[str] = frozenset({
    "i", "me", "my", "we", "us", "our", "ours", "you", "your", "yours", "he", "him", "his", "she", "her",
    "hers", "its", "them", "theirs", "those", "which", "who", "whom", "whose", "what", "am", "been", "being",
    "were", "has", "have", "had", "having", "do", "does", "did", "doing", "can", "could", "shall", "should",
    "would", "may", "might", "must", "also", "so", "than", "because", "however", "therefore", "thus", "hence",
    "while", "although", "though", "whereas", "since", "about", "from",
})

Embed = Callable[[Sequence[str]], np.ndarray]

# The analyzer's word pattern, so negation cues and digits are seen in the words it sees.
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
# Digits with optional thousands groups and decimals; a run inside a word counts too
# ("Q3" holds 3, "FY2024" holds 2024).
_NUMBER = re.compile(r"(?<![\d.])\d+(?:,\d{3})*(?:\.\d+)?")


@functools.cache
def _function_stems() -> frozenset[str]:
    return frozenset(analyze(" ".join(FUNCTION_WORDS)))


def _is_negation(word: str) -> bool:
    return word in NEGATIONS or word.endswith(("n't", "n\u2019t"))


def split_sentences(text: str) -> list[str]:
    """Sentences (and lines) of a text, by the chunker's splitter: terminal punctuation
    followed by whitespace and no lowercase, with common abbreviations ("e.g.", "Dr.") kept whole."""
    return [text[a:b] for a, b in sentence_spans(text, 0, len(text))]


def content_terms(text: str) -> frozenset[str]:
    """Distinct stemmed terms a source must share for a sentence to be supported (see module docstring)."""
    words = [w for w in _WORD.findall(text.lower()) if not _is_negation(w) and not any(c.isdigit() for c in w)]
    return frozenset(analyze(" ".join(words))) - _function_stems()


def numbers(text: str) -> frozenset[str]:
    """Numbers written in a text, canonical by value: "1,200" -> "1200", "4.50" -> "4.5"."""
    return frozenset(format(Decimal(m.group().replace(",", "")).normalize(), "f") for m in _NUMBER.finditer(text))


def is_negated(text: str) -> bool:
    """Does the text carry a negation cue ("not", "never", "didn't", ...)?"""
    return any(_is_negation(w) for w in _WORD.findall(text.lower()))


@dataclass(frozen=True, slots=True)
class _Evidence:
    """A chunk prepared once: its terms and numbers, and each of its sentences' terms and polarity."""

    terms: frozenset[str]
    numbers: frozenset[str]
    sentences: tuple[tuple[frozenset[str], bool], ...]

    @classmethod
    def of(cls, text: str) -> _Evidence:
        return cls(content_terms(text), numbers(text),
                   tuple((content_terms(s), is_negated(s)) for s in split_sentences(text)))


@dataclass(frozen=True, slots=True)
class SentenceSupport:
    """How well the best chunk supports one answer sentence (rules in the module docstring).

    `chunk_id` is None when there was no chunk to check against; `missing_numbers` are the
    sentence's numbers that chunk lacks; `negation_mismatch` says the polarity rule failed.
    """

    sentence: str
    chunk_id: str | None
    score: float
    supported: bool
    missing_numbers: tuple[str, ...] = ()
    negation_mismatch: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"sentence": self.sentence, "chunk_id": self.chunk_id, "score": round(self.score, 6),
                "supported": self.supported, "missing_numbers": list(self.missing_numbers),
                "negation_mismatch": self.negation_mismatch}


def _support(sentence: str, terms: frozenset[str], sentence_numbers: frozenset[str], negated: bool,
             chunk_id: str, evidence: _Evidence, threshold: float) -> SentenceSupport:
    coverage = len(terms & evidence.terms) / len(terms) if terms else 0.0
    missing = tuple(sorted(sentence_numbers - evidence.numbers, key=Decimal))
    overlaps = [len(terms & chunk_terms) for chunk_terms, _ in evidence.sentences]
    most = max(overlaps, default=0)
    polarities = {polarity for (_, polarity), overlap in zip(evidence.sentences, overlaps, strict=True)
                  if overlap == most}
    mismatch = negated not in polarities
    return SentenceSupport(sentence, chunk_id, coverage, coverage >= threshold and not missing and not mismatch,
                           missing, mismatch)


def _best_support(sentence: str, evidence: Mapping[str, _Evidence], threshold: float) -> SentenceSupport:
    if not evidence:
        return SentenceSupport(sentence, None, 0.0, False)
    terms, sentence_numbers, negated = content_terms(sentence), numbers(sentence), is_negated(sentence)
    candidates = [_support(sentence, terms, sentence_numbers, negated, chunk_id, chunk, threshold)
                  for chunk_id, chunk in evidence.items()]

    # max keeps the first of equals: context order breaks ties
    return max(candidates, key=lambda s: (s.supported, s.score))


def support(sentence: str, chunks: Mapping[str, str], threshold: float = SUPPORT_THRESHOLD) -> SentenceSupport:
    """The sentence's support score and best chunk among `chunks` ({chunk id: text})."""
    return _best_support(sentence, {cid: _Evidence.of(text) for cid, text in chunks.items()}, threshold)


@dataclass(frozen=True, slots=True)
class Faithfulness:
    score: float  # supported sentences / sentences; 0.0 for an answer without sentences
    sentences: tuple[SentenceSupport, ...]


def faithfulness(sentences: Sequence[str], chunks: Mapping[str, str],
                 threshold: float = SUPPORT_THRESHOLD) -> Faithfulness:
    """Share of `sentences` supported by some chunk of `chunks` (pass the cited ones), with per-sentence detail."""
    evidence = {cid: _Evidence.of(text) for cid, text in chunks.items()}
    detail = tuple(_best_support(s, evidence, threshold) for s in sentences)
    score = sum(s.supported for s in detail) / len(detail) if detail else 0.0
    return Faithfulness(score, detail)


def supporting_chunks(sentence: str, chunks: Mapping[str, str], threshold: float = SUPPORT_THRESHOLD) -> list[str]:
    """Ids of every chunk that alone supports the sentence, in the given order."""
    terms, sentence_numbers, negated = content_terms(sentence), numbers(sentence), is_negated(sentence)
    return [cid for cid, text in chunks.items()
            if _support(sentence, terms, sentence_numbers, negated, cid, _Evidence.of(text), threshold).supported]


def context_precision(retrieved: Sequence[str], relevant: Collection[str]) -> float:
    """Mean precision@k over the ranks k (1-based, retrieval order) holding a relevant context; 0 if none does."""
    hits, total = 0, 0.0
    for rank, chunk_id in enumerate(retrieved, start=1):
        if chunk_id in relevant:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def context_recall(retrieved: Sequence[str], relevant: Collection[str]) -> float | None:
    """Relevant contexts retrieved / relevant contexts; None when nothing is judged relevant."""
    relevant = set(relevant)
    if not relevant:
        return None
    return len(relevant & set(retrieved)) / len(relevant)


@dataclass(frozen=True, slots=True)
class CitationScores:
    precision: float | None  # None: the answer cites nothing
    recall: float | None  # None: no retrieved context supports any sentence
    supporting: tuple[tuple[str, ...], ...]  # per sentence: every context that supports it


def citation_scores(sentences: Sequence[str], citations: Sequence[Collection[str]], contexts: Mapping[str, str],
                    threshold: float = SUPPORT_THRESHOLD) -> CitationScores:
    """Citation precision and recall of per-sentence `citations` against support by `contexts` (all retrieved)."""
    if len(sentences) != len(citations):
        raise ValueError(f"{len(sentences)} sentences but {len(citations)} citation lists")
    evidence = {cid: _Evidence.of(text) for cid, text in contexts.items()}
    pairs = correct_pairs = supportable = cited_support = 0
    supporting = []
    for sentence, cited in zip(sentences, citations, strict=True):
        terms, sentence_numbers, negated = content_terms(sentence), numbers(sentence), is_negated(sentence)
        supported_by = tuple(cid for cid, chunk in evidence.items()
                             if _support(sentence, terms, sentence_numbers, negated, cid, chunk, threshold).supported)
        supporting.append(supported_by)
        pairs += len(cited)
        correct_pairs += sum(1 for cid in cited if cid in supported_by)
        if supported_by:
            supportable += 1
            cited_support += any(cid in supported_by for cid in cited)
    return CitationScores(correct_pairs / pairs if pairs else None,
                          cited_support / supportable if supportable else None, tuple(supporting))


def answer_relevancy(question: str, answer: str, embed: Embed) -> float:
    """Cosine similarity of the two texts' embeddings (vectors are re-normalised, so any scale will do)."""
    vectors = np.asarray(embed([question, answer]), dtype=np.float64)
    if vectors.shape[0] != 2:
        raise ValueError(f"embed returned {vectors.shape[0]} vectors for 2 texts")
    norms = np.linalg.norm(vectors, axis=1)
    if not np.all(norms > 0):
        raise ValueError("embed returned a zero vector")
    return float(vectors[0] @ vectors[1] / (norms[0] * norms[1]))
