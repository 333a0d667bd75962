"""Retrieval quality measures over TREC-style judgments and runs, as trec_eval computes them.

Judgments (qrels) are `{query_id: {doc_id: relevance}}` with integer grades; a run is
`{query_id: {doc_id: score}}`. The definitions follow trec_eval (and so pytrec_eval and
ir-measures, which tests/unit/test_ir_metrics.py checks to 1e-6):

- ranking: score descending, ties broken by doc id descending (trec_eval compares doc
  ids with strcmp; Python compares code points, which orders UTF-8 the same way). The
  rank field of a run file is ignored, as trec_eval ignores it;
- relevant: grade >= `relevance_level` (1 by default, trec_eval's `-l`);
- nDCG@k: sum of gain / log2(rank + 1) over the top k, gain = the grade (0 for grades
  <= 0), divided by the same sum over the judged documents in the ideal order;
- MAP@k (AP@k): the sum of precision at each relevant rank within the top k, divided by
  the number of relevant documents judged for the query (not by min(k, that number));
- Recall@k: relevant documents in the top k / relevant documents judged;
- P@k: relevant documents in the top k / k, even when fewer than k were retrieved;
- MRR@k: 1 / rank of the first relevant document within the top k, else 0.

A measure without a cutoff ("nDCG", "MAP", "MRR") looks at the whole ranking.

Which queries are averaged: every query in the qrels, judged relevant or not (a query
whose judgments are all 0 scores 0); queries of the run that the qrels do not mention
are left out. A judged query the run does not answer scores 0 by default, as
ir-measures and `trec_eval -c` count it; `missing_as_zero=False` leaves it out, as plain
`trec_eval` does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]

DEFAULT_MEASURES: tuple[str, ...] = ("nDCG@10", "MAP@100", "Recall@100", "MRR@10")


# --- measures on one ranked list ------------------------------------------------------------
def trec_ranking(scores: Mapping[str, float]) -> list[str]:
    """Doc ids in trec_eval's order: score descending, then doc id descending."""
    return [doc for doc, _ in sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)]


def _top(ranking: Sequence[str], k: int | None) -> Sequence[str]:
    return ranking if k is None else ranking[:k]


def _relevant_count(judgments: Mapping[str, int], relevance_level: int) -> int:
    return sum(1 for grade in judgments.values() if grade >= relevance_level)


def ndcg(judgments: Mapping[str, int], ranking: Sequence[str], k: int | None = None) -> float:
    """Normalised discounted cumulative gain with graded gains and a log2 discount."""
    dcg = 0.0
    for position, doc in enumerate(_top(ranking, k)):
        gain = judgments.get(doc, 0)
        if gain > 0:
            dcg += gain / math.log2(position + 2)
    ideal_gains = sorted((grade for grade in judgments.values() if grade > 0), reverse=True)
    ideal = sum(gain / math.log2(position + 2) for position, gain in enumerate(_top(ideal_gains, k)))
    return dcg / ideal if ideal > 0 else 0.0


def average_precision(judgments: Mapping[str, int], ranking: Sequence[str], k: int | None = None,
                      relevance_level: int = 1) -> float:
    """Sum of precision at the relevant ranks within the top k / all relevant judged."""
    relevant = _relevant_count(judgments, relevance_level)
    if relevant == 0:
        return 0.0
    found, total = 0, 0.0
    for position, doc in enumerate(_top(ranking, k)):
        if judgments.get(doc, 0) >= relevance_level:
            found += 1
            total += found / (position + 1)
    return total / relevant


def recall(judgments: Mapping[str, int], ranking: Sequence[str], k: int | None = None,
           relevance_level: int = 1) -> float:
    relevant = _relevant_count(judgments, relevance_level)
    if relevant == 0:
        return 0.0
    return sum(1 for doc in _top(ranking, k) if judgments.get(doc, 0) >= relevance_level) / relevant


def precision(judgments: Mapping[str, int], ranking: Sequence[str], k: int | None = None,
              relevance_level: int = 1) -> float:
    """Relevant in the top k / k; without a cutoff, / the number retrieved."""
    top = _top(ranking, k)
    denominator = k if k is not None else len(top)
    if denominator == 0:
        return 0.0
    return sum(1 for doc in top if judgments.get(doc, 0) >= relevance_level) / denominator


def reciprocal_rank(judgments: Mapping[str, int], ranking: Sequence[str], k: int | None = None,
                    relevance_level: int = 1) -> float:
    for position, doc in enumerate(_top(ranking, k)):
        if judgments.get(doc, 0) >= relevance_level:
            return 1.0 / (position + 1)
    return 0.0


# --- measure names --------------------------------------------------------------------------
_CANONICAL = {"ndcg": "nDCG", "map": "MAP", "ap": "MAP", "recall": "Recall", "r": "Recall",
              "p": "P", "precision": "P", "mrr": "MRR", "rr": "MRR"}
_MEASURE = re.compile(r"^\s*([A-Za-z]+)\s*(?:@\s*(\d+))?\s*$")


@dataclass(frozen=True, slots=True)
class Measure:
    """A measure and its cutoff (None: the whole ranking), e.g. nDCG@10."""

    name: str  # one of nDCG, MAP, Recall, P, MRR
    cutoff: int | None

    @property
    def label(self) -> str:
        return self.name if self.cutoff is None else f"{self.name}@{self.cutoff}"

    def __str__(self) -> str:
        return self.label

    def compute(self, judgments: Mapping[str, int], ranking: Sequence[str], relevance_level: int = 1) -> float:
        if self.name == "nDCG":
            return ndcg(judgments, ranking, self.cutoff)
        function: Callable[..., float] = {"MAP": average_precision, "Recall": recall, "P": precision,
                                          "MRR": reciprocal_rank}[self.name]
        return function(judgments, ranking, self.cutoff, relevance_level)


def parse_measure(text: str) -> Measure:
    """'nDCG@10', 'MAP@100', 'AP@100', 'Recall@100', 'R@100', 'P@10', 'MRR@10', 'RR' ... (any case)."""
    match = _MEASURE.match(text)
    name = _CANONICAL.get(match.group(1).lower()) if match else None
    if match is None or name is None:
        raise ValueError(f"unknown measure {text!r}; expected one of nDCG, MAP (AP), Recall (R), P (Precision), "
                         f"MRR (RR), optionally with @k, e.g. 'nDCG@10'")
    cutoff = int(match.group(2)) if match.group(2) is not None else None
    if cutoff == 0:
        raise ValueError(f"measure {text!r}: the cutoff must be at least 1")
    return Measure(name, cutoff)


# --- evaluation -----------------------------------------------------------------------------
def _natural_key(query_id: str) -> tuple[Any, ...]:
    """'2' before '10': numeric parts compared as numbers."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", query_id))


def evaluate_rankings(qrels: Mapping[str, Mapping[str, int]], rankings: Mapping[str, Sequence[str]],
                      measures: Iterable[str | Measure] = DEFAULT_MEASURES, *, relevance_level: int = 1,
                      missing_as_zero: bool = True) -> dict[str, Any]:
    """Like `evaluate`, over ranked doc-id lists taken in the given order (no scores, no ties)."""
    parsed = [m if isinstance(m, Measure) else parse_measure(m) for m in measures]
    labels = [m.label for m in parsed]
    if len(set(labels)) != len(labels):
        raise ValueError(f"measures named twice: {labels}")
    for query_id, ranking in rankings.items():
        if len(set(ranking)) != len(ranking):
            raise ValueError(f"query {query_id!r}: the ranking lists a document more than once")
    missing = sorted((q for q in qrels if q not in rankings), key=_natural_key)
    queries = sorted((q for q in qrels if q in rankings or missing_as_zero), key=_natural_key)
    if not queries:
        raise ValueError("no query to evaluate: the qrels are empty"
                         + ("" if missing_as_zero else " or share no query with the run"))
    per_query = {
        query_id: {m.label: m.compute(qrels[query_id], rankings.get(query_id, ()), relevance_level) for m in parsed}
        for query_id in queries
    }
    aggregate = {label: math.fsum(values[label] for values in per_query.values()) / len(per_query)
                 for label in labels}
    return {
        "measures": labels,
        "queries": len(per_query),
        "aggregate": aggregate,
        "per_query": per_query,
        "missing_queries": missing,
        "missing_counted_as_zero": missing_as_zero,
        "unjudged_queries_ignored": sum(1 for q in rankings if q not in qrels),
    }


def evaluate(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]],
             measures: Iterable[str | Measure] = DEFAULT_MEASURES, *, relevance_level: int = 1,
             missing_as_zero: bool = True) -> dict[str, Any]:
    """Per-query values and their means over the judged queries (see the module docstring).

    Returns {"measures", "queries", "aggregate": {label: mean}, "per_query": {query_id:
    {label: value}}, "missing_queries", "missing_counted_as_zero", "unjudged_queries_ignored"}.
    """
    for query_id, scores in run.items():
        for doc_id, score in scores.items():
            if math.isnan(score):
                raise ValueError(f"query {query_id!r}, document {doc_id!r}: score is NaN")
    rankings = {query_id: trec_ranking(scores) for query_id, scores in run.items()}
    return evaluate_rankings(qrels, rankings, measures, relevance_level=relevance_level,
                             missing_as_zero=missing_as_zero)


# --- TREC files -----------------------------------------------------------------------------
class TrecFormatError(ValueError):
    """A malformed line of a qrels or run file; names the source and the line number."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}, line {line}: {message}")
        self.source, self.line = source, line


def _lines(path: str | Path) -> Iterable[str]:
    with Path(path).open(encoding="utf-8") as handle:
        yield from handle


def parse_qrels(lines: Iterable[str], source: str = "<qrels>") -> Qrels:
    """Lines 'query_id iteration doc_id relevance' (whitespace-separated; blank lines skipped)."""
    qrels: Qrels = {}
    seen: dict[tuple[str, str], int] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4:
            raise TrecFormatError(source, number, f"expected 4 fields 'query_id iteration doc_id relevance', "
                                                  f"got {len(fields)}: {line.strip()[:200]!r}")
        query_id, _, doc_id, grade = fields
        try:
            relevance = int(grade)
        except ValueError:
            raise TrecFormatError(source, number, f"relevance must be an integer, got {grade!r}") from None
        first = seen.setdefault((query_id, doc_id), number)
        if first != number:
            raise TrecFormatError(source, number, f"query {query_id!r} judges document {doc_id!r} twice "
                                                  f"(first on line {first})")
        qrels.setdefault(query_id, {})[doc_id] = relevance
    return qrels


def parse_run(lines: Iterable[str], source: str = "<run>") -> Run:
    """Lines 'query_id Q0 doc_id rank score tag'; the rank is checked but, as in trec_eval, not used."""
    run: Run = {}
    seen: dict[tuple[str, str], int] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            raise TrecFormatError(source, number, f"expected 6 fields 'query_id Q0 doc_id rank score tag', "
                                                  f"got {len(fields)}: {line.strip()[:200]!r}")
        query_id, _, doc_id, rank, score_text, _ = fields
        try:
            int(rank)
        except ValueError:
            raise TrecFormatError(source, number, f"rank must be an integer, got {rank!r}") from None
        try:
            score = float(score_text)
        except ValueError:
            raise TrecFormatError(source, number, f"score must be a number, got {score_text!r}") from None
        if math.isnan(score):
            raise TrecFormatError(source, number, "score is NaN")
        first = seen.setdefault((query_id, doc_id), number)
        if first != number:
            raise TrecFormatError(source, number, f"query {query_id!r} retrieves document {doc_id!r} twice "
                                                  f"(first on line {first})")
        run.setdefault(query_id, {})[doc_id] = score
    return run


def read_qrels(path: str | Path) -> Qrels:
    return parse_qrels(_lines(path), str(path))


def read_run(path: str | Path) -> Run:
    return parse_run(_lines(path), str(path))


def _check_token(kind: str, value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{kind} {value!r} cannot be written to a TREC file: empty or contains whitespace")
    return value


def format_qrels(qrels: Mapping[str, Mapping[str, int]]) -> Iterable[str]:
    for query_id in sorted(qrels, key=_natural_key):
        for doc_id, relevance in qrels[query_id].items():
            yield f"{_check_token('query id', query_id)} 0 {_check_token('doc id', doc_id)} {int(relevance)}\n"


def format_run(run: Mapping[str, Mapping[str, float]], tag: str = "stratmaster") -> Iterable[str]:
    """Run lines in trec_eval's order; scores written with repr so they read back exactly."""
    _check_token("tag", tag)
    for query_id in sorted(run, key=_natural_key):
        _check_token("query id", query_id)
        scores = run[query_id]
        for rank, doc_id in enumerate(trec_ranking(scores), start=1):
            yield f"{query_id} Q0 {_check_token('doc id', doc_id)} {rank} {float(scores[doc_id])!r} {tag}\n"


def _write(path: str | Path, lines: Iterable[str]) -> None:
    text = "".join(lines)  # formatted first: a bad id raises before anything is written
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)


def write_qrels(path: str | Path, qrels: Mapping[str, Mapping[str, int]]) -> None:
    _write(path, format_qrels(qrels))


def write_run(path: str | Path, run: Mapping[str, Mapping[str, float]], tag: str = "stratmaster") -> None:
    _write(path, format_run(run, tag))
