"""RAG eval cases in JSONL, and scoring a case with every measure of `rag_metrics`.

One JSON object per line (blank lines skipped):

    {"id": "pricing-churn",                      string or integer, unique in the file
     "question": "Did the price rise hurt retention?",
     "contexts": [{"id": "churn-q2", "text": "..."}, ...],   retrieved chunks, rank 1 first; ids unique
     "answer": "Churn did not rise [churn-q2]. Retention rose [nrr, churn-q2].",
     "relevant": ["churn-q2", "nrr"],            optional: judged-relevant chunk ids
     "metadata": {...}}                          optional, free-form

The answer cites with inline markers: `[id]` or `[id1, id2]` (commas or semicolons), in or
right after the sentence it supports ("... grew 14% [c1]." and "... grew 14%. [c1]" both
cite c1 for that sentence). The marker-free answer is split into sentences by
`rag_metrics.split_sentences`; a marker belongs to the last sentence that starts before it.
Every bracket pair in a string answer is read as a marker, so a marker naming an id that
is not a context is an error rather than prose (write literal brackets as parentheses).

When the sentence split must be exact, `answer` may instead be a list of sentences,
`[{"text": "Churn did not rise.", "citations": ["churn-q2"]}, ...]`, whose texts carry
no markers.

`relevant` may name chunks that were not retrieved (that is what context recall
counts); omit it for an unjudged case, whose context measures are then None. Unknown
fields are errors, so a misspelt "relevent" is not silently unjudged. Errors are
`DatasetFormatError`s naming the file, the line and the field ("contexts[2].id").
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stratmaster.evals import rag_metrics
from stratmaster.evals.datasets import DatasetFormatError, _json_objects, _metadata
from stratmaster.evals.rag_metrics import SUPPORT_THRESHOLD, Embed
from stratmaster.knowledge.chunking import sentence_spans

FIELDS = frozenset({"id", "question", "answer", "contexts", "relevant", "metadata"})
MEASURES = ("faithfulness", "context_precision", "context_recall", "citation_precision", "citation_recall",
            "answer_relevancy")

# A bracket pair on one line, with the spaces before it (removed with the marker).
_MARKER = re.compile(r"[^\S\n]*\[([^\[\]\n]*)\]")
_ID_SEPARATOR = re.compile(r"[,;]")


@dataclass(frozen=True, slots=True)
class Context:
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class AnswerSentence:
    text: str
    citations: tuple[str, ...]  # context ids, in the order cited, without repeats


@dataclass(frozen=True, slots=True)
class RagCase:
    id: str
    question: str
    answer: str  # without citation markers
    sentences: tuple[AnswerSentence, ...]
    contexts: tuple[Context, ...]
    relevant: tuple[str, ...] | None  # None: unjudged
    metadata: dict[str, Any] = field(default_factory=dict)

    def context_texts(self) -> dict[str, str]:
        return {c.id: c.text for c in self.contexts}


def parse_cited_answer(answer: str) -> list[AnswerSentence]:
    """Split an answer with inline `[id, ...]` markers into sentences and their citations.

    Raises ValueError for an empty marker or an empty id in one; ids are not checked here.
    """
    pieces: list[str] = []
    markers: list[tuple[int, tuple[str, ...]]] = []  # (position in the clean text, ids)
    length, previous = 0, 0
    for match in _MARKER.finditer(answer):
        pieces.append(answer[previous:match.start()])
        length += match.start() - previous
        previous = match.end()
        ids = tuple(part.strip() for part in _ID_SEPARATOR.split(match.group(1)))
        if not all(ids):
            raise ValueError(f"citation marker {match.group().strip()!r} has an empty id")
        markers.append((length, ids))
    pieces.append(answer[previous:])
    clean = "".join(pieces)
    spans = sentence_spans(clean, 0, len(clean))
    cited: list[list[str]] = [[] for _ in spans]
    for position, ids in markers:
        if spans:
            owner = max((i for i, (start, _) in enumerate(spans) if start < position), default=0)
            cited[owner].extend(i for i in ids if i not in cited[owner])
    return [AnswerSentence(clean[start:end], tuple(ids)) for (start, end), ids in zip(spans, cited, strict=True)]


# --- loading ----------------------------------------------------------------------------------
def _id(path: Path, number: int, value: Any, name: str) -> str:
    """A string or an integer, kept as a string (as `datasets` reads BEIR ids)."""
    if value is None:
        raise DatasetFormatError(path, number, name, "missing")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DatasetFormatError(path, number, name, f"must be a string or an integer, got {type(value).__name__}")
    if not str(value).strip():
        raise DatasetFormatError(path, number, name, "must not be empty")
    return str(value).strip()


def _text(path: Path, number: int, value: Any, name: str) -> str:
    if value is None:
        raise DatasetFormatError(path, number, name, "missing")
    if not isinstance(value, str):
        raise DatasetFormatError(path, number, name, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DatasetFormatError(path, number, name, "must not be empty")
    return value


def _list(path: Path, number: int, value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise DatasetFormatError(path, number, name, f"must be a list, got {type(value).__name__}")
    return value


def _contexts(path: Path, number: int, value: Any) -> tuple[Context, ...]:
    contexts: list[Context] = []
    first: dict[str, int] = {}
    for index, item in enumerate(_list(path, number, value, "contexts")):
        where = f"contexts[{index}]"
        if not isinstance(item, dict):
            raise DatasetFormatError(path, number, where, f"must be an object, got {type(item).__name__}")
        unknown = sorted(set(item) - {"id", "text"})
        if unknown:
            raise DatasetFormatError(path, number, f"{where}.{unknown[0]}", "unknown field (a context has id, text)")
        chunk_id = _id(path, number, item.get("id"), f"{where}.id")
        if chunk_id in first:
            raise DatasetFormatError(path, number, f"{where}.id", f"{chunk_id!r} repeats contexts[{first[chunk_id]}]")
        first[chunk_id] = index
        contexts.append(Context(chunk_id, _text(path, number, item.get("text"), f"{where}.text")))
    if not contexts:
        raise DatasetFormatError(path, number, "contexts", "must list at least one context")
    return tuple(contexts)


def _sentences(path: Path, number: int, value: Any) -> tuple[AnswerSentence, ...]:
    if isinstance(value, str):
        _text(path, number, value, "answer")
        try:
            sentences = parse_cited_answer(value)
        except ValueError as exc:
            raise DatasetFormatError(path, number, "answer", str(exc)) from None
        if not sentences:
            raise DatasetFormatError(path, number, "answer", "has no sentence outside its citation markers")
        return tuple(sentences)
    if not isinstance(value, list):
        raise DatasetFormatError(path, number, "answer", f"must be a string or a list of sentences, "
                                                         f"got {type(value).__name__}")
    sentences = []
    for index, item in enumerate(value):
        where = f"answer[{index}]"
        if not isinstance(item, dict):
            raise DatasetFormatError(path, number, where, f"must be an object, got {type(item).__name__}")
        unknown = sorted(set(item) - {"text", "citations"})
        if unknown:
            raise DatasetFormatError(path, number, f"{where}.{unknown[0]}",
                                     "unknown field (a sentence has text, citations)")
        text = _text(path, number, item.get("text"), f"{where}.text")
        if _MARKER.search(text):
            raise DatasetFormatError(path, number, f"{where}.text", "contains a [marker]; in the list form "
                                                                    "citations go in 'citations'")
        citations = _list(path, number, item.get("citations", []), f"{where}.citations")
        ids = [_id(path, number, c, f"{where}.citations[{i}]") for i, c in enumerate(citations)]
        sentences.append(AnswerSentence(text.strip(), tuple(dict.fromkeys(ids))))
    if not sentences:
        raise DatasetFormatError(path, number, "answer", "must list at least one sentence")
    return tuple(sentences)


def _relevant(path: Path, number: int, value: Any) -> tuple[str, ...]:
    ids = [_id(path, number, v, f"relevant[{i}]") for i, v in enumerate(_list(path, number, value, "relevant"))]
    if not ids:
        raise DatasetFormatError(path, number, "relevant", "must name at least one chunk; omit the field "
                                                           "when the case is unjudged")
    return tuple(dict.fromkeys(ids))


def parse_case(path: Path, number: int, record: dict[str, Any]) -> RagCase:
    """One case from its decoded JSON object; `path` and `number` only name where errors are."""
    unknown = sorted(set(record) - FIELDS)
    if unknown:
        raise DatasetFormatError(path, number, unknown[0], f"unknown field (known: {', '.join(sorted(FIELDS))})")
    case_id = _id(path, number, record.get("id"), "id")
    question = _text(path, number, record.get("question"), "question")
    contexts = _contexts(path, number, record.get("contexts"))
    if "answer" not in record:
        raise DatasetFormatError(path, number, "answer", "missing")
    sentences = _sentences(path, number, record["answer"])
    known = {c.id for c in contexts}
    for sentence in sentences:
        for chunk_id in sentence.citations:
            if chunk_id not in known:
                raise DatasetFormatError(path, number, "answer", f"cites {chunk_id!r}, which is not a context id "
                                                                 f"(contexts: {', '.join(sorted(known))})")
    relevant = _relevant(path, number, record["relevant"]) if record.get("relevant") is not None else None
    return RagCase(case_id, question, " ".join(s.text for s in sentences), sentences, contexts, relevant,
                   _metadata(path, number, record))


def read_rag_cases(path: Path | str) -> list[RagCase]:
    """Every case of a JSONL file, in file order; a file without cases is an error."""
    path = Path(path)
    cases: list[RagCase] = []
    first: dict[str, int] = {}
    for number, record in _json_objects(path):
        case = parse_case(path, number, record)
        if first.setdefault(case.id, number) != number:
            raise DatasetFormatError(path, number, "id", f"case id {case.id!r} repeats line {first[case.id]}")
        cases.append(case)
    if not cases:
        raise DatasetFormatError(path, None, None, "no cases")
    return cases


# --- scoring ----------------------------------------------------------------------------------
def score_case(case: RagCase, embed: Embed | None = None, threshold: float = SUPPORT_THRESHOLD) -> dict[str, Any]:
    """Every measure of `rag_metrics` for one case (None where undefined), with per-sentence detail.

    Without `embed`, answer relevancy is None.
    """
    contexts = case.context_texts()
    texts = [s.text for s in case.sentences]
    citations = [s.citations for s in case.sentences]
    cited_ids = {chunk_id for ids in citations for chunk_id in ids}
    faithful = rag_metrics.faithfulness(texts, {i: t for i, t in contexts.items() if i in cited_ids}, threshold)
    cites = rag_metrics.citation_scores(texts, citations, contexts, threshold)
    retrieved = [c.id for c in case.contexts]
    judged = case.relevant is not None
    return {
        "id": case.id,
        "faithfulness": faithful.score,
        "context_precision": rag_metrics.context_precision(retrieved, case.relevant) if judged else None,
        "context_recall": rag_metrics.context_recall(retrieved, case.relevant) if judged else None,
        "citation_precision": cites.precision,
        "citation_recall": cites.recall,
        "answer_relevancy": rag_metrics.answer_relevancy(case.question, case.answer, embed) if embed else None,
        "sentences": [
            {"text": sentence.text, "citations": list(sentence.citations),
             "supported": detail.supported, "score": round(detail.score, 6), "best_chunk": detail.chunk_id,
             "missing_numbers": list(detail.missing_numbers), "negation_mismatch": detail.negation_mismatch,
             "supported_by": list(supported_by)}
            for sentence, detail, supported_by in zip(case.sentences, faithful.sentences, cites.supporting,
                                                      strict=True)
        ],
    }


def score_cases(cases: Iterable[RagCase], embed: Embed | None = None,
                threshold: float = SUPPORT_THRESHOLD) -> dict[str, Any]:
    """Per-case scores and, per measure, the mean over the cases where it is defined (None if none is).

    The result has `"kind": "rag_eval"`, the name of its gate set in configs/evals/thresholds.yaml.
    """
    per_case = [score_case(case, embed, threshold) for case in cases]
    mean: dict[str, float | None] = {}
    scored: dict[str, int] = {}
    for measure in MEASURES:
        values = [c[measure] for c in per_case if c[measure] is not None]
        scored[measure] = len(values)
        mean[measure] = math.fsum(values) / len(values) if values else None
    return {"kind": "rag_eval", "cases": len(per_case), "support_threshold": threshold, "mean": mean,
            "scored_cases": scored, "per_case": per_case}
