"""BEIR-format test collections: a corpus, queries and relevance judgments in one folder.

    <folder>/corpus.jsonl        {"_id", "title"?, "text", "metadata"?} per line
    <folder>/queries.jsonl       {"_id", "text", "metadata"?} per line
    <folder>/qrels/<split>.tsv   header "query-id<TAB>corpus-id<TAB>score", then one judgment a line

(the layout of BEIR, Thakur et al. 2021, and of its `GenericDataLoader`). Ids may be
JSON strings or integers and are kept as strings. Every malformed input raises
`DatasetFormatError` naming the file, the line number and the field; nothing is skipped
silently except blank lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stratmaster.evals.ir_metrics import Qrels

QRELS_HEADER = ("query-id", "corpus-id", "score")


class DatasetFormatError(ValueError):
    """Malformed collection input: `path`, 1-based `line` (None: the whole file) and `field`."""

    def __init__(self, path: Path | str, line: int | None, field_name: str | None, message: str) -> None:
        where = str(path) if line is None else f"{path}, line {line}"
        what = f"field {field_name!r}: " if field_name else ""
        super().__init__(f"{where}: {what}{message}")
        self.path, self.line, self.field = str(path), line, field_name


@dataclass(frozen=True, slots=True)
class CorpusDocument:
    id: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Query:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BeirDataset:
    name: str
    split: str
    corpus: dict[str, CorpusDocument]
    queries: dict[str, Query]
    qrels: Qrels

    def judged_queries(self) -> list[Query]:
        """Queries with at least one judgment in the split, in file order."""
        return [query for query_id, query in self.queries.items() if self.qrels.get(query_id)]


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-blank lines; decoding errors name their line."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetFormatError(path, number, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") \
                    from None
            if line.strip():
                yield number, line


def _json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _numbered_lines(path):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(path, number, None, f"invalid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(value, dict):
            raise DatasetFormatError(path, number, None, f"expected a JSON object, got {type(value).__name__}")
        yield number, value


def _identifier(path: Path, number: int, record: dict[str, Any], name: str = "_id") -> str:
    if name not in record:
        raise DatasetFormatError(path, number, name, "missing")
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DatasetFormatError(path, number, name, f"must be a string or an integer, got {type(value).__name__}")
    text = str(value)
    if not text.strip():
        raise DatasetFormatError(path, number, name, "must not be empty")
    return text


def _string(path: Path, number: int, record: dict[str, Any], name: str, required: bool) -> str:
    if name not in record or record[name] is None:
        if required:
            raise DatasetFormatError(path, number, name, "missing")
        return ""
    value = record[name]
    if not isinstance(value, str):
        raise DatasetFormatError(path, number, name, f"must be a string, got {type(value).__name__}")
    return value


def _metadata(path: Path, number: int, record: dict[str, Any]) -> dict[str, Any]:
    value = record.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DatasetFormatError(path, number, "metadata", f"must be an object, got {type(value).__name__}")
    return value


def _unique(path: Path, number: int, key: str, seen: dict[str, int], what: str) -> None:
    first = seen.setdefault(key, number)
    if first != number:
        raise DatasetFormatError(path, number, "_id", f"{what} id {key!r} repeats line {first}")


def read_corpus(path: Path | str) -> dict[str, CorpusDocument]:
    """corpus.jsonl: `_id` and `text` required, `title` optional (BEIR has corpora without)."""
    path = Path(path)
    corpus: dict[str, CorpusDocument] = {}
    seen: dict[str, int] = {}
    for number, record in _json_objects(path):
        doc_id = _identifier(path, number, record)
        _unique(path, number, doc_id, seen, "document")
        corpus[doc_id] = CorpusDocument(doc_id, _string(path, number, record, "title", required=False),
                                        _string(path, number, record, "text", required=True),
                                        _metadata(path, number, record))
    return corpus


def read_queries(path: Path | str) -> dict[str, Query]:
    path = Path(path)
    queries: dict[str, Query] = {}
    seen: dict[str, int] = {}
    for number, record in _json_objects(path):
        query_id = _identifier(path, number, record)
        _unique(path, number, query_id, seen, "query")
        text = _string(path, number, record, "text", required=True)
        if not text.strip():
            raise DatasetFormatError(path, number, "text", "must not be empty")
        queries[query_id] = Query(query_id, text, _metadata(path, number, record))
    return queries


def read_beir_qrels(path: Path | str) -> Qrels:
    """qrels/<split>.tsv: the header line, then 'query-id<TAB>corpus-id<TAB>integer score'."""
    path = Path(path)
    qrels: Qrels = {}
    seen: dict[tuple[str, str], int] = {}
    header_seen = False
    for number, line in _numbered_lines(path):
        fields = [f.strip() for f in line.rstrip("\r\n").split("\t")]
        if not header_seen:
            if tuple(fields) != QRELS_HEADER:
                raise DatasetFormatError(path, number, None, f"expected the header {chr(9).join(QRELS_HEADER)!r}, "
                                                             f"got {line.strip()[:200]!r}")
            header_seen = True
            continue
        if len(fields) != 3:
            raise DatasetFormatError(path, number, None, f"expected 3 tab-separated fields (query-id, corpus-id, "
                                                         f"score), got {len(fields)}: {line.strip()[:200]!r}")
        query_id, doc_id, score = fields
        for name, value in (("query-id", query_id), ("corpus-id", doc_id)):
            if not value:
                raise DatasetFormatError(path, number, name, "must not be empty")
        try:
            relevance = int(score)
        except ValueError:
            raise DatasetFormatError(path, number, "score", f"must be an integer, got {score!r}") from None
        first = seen.setdefault((query_id, doc_id), number)
        if first != number:
            raise DatasetFormatError(path, number, None, f"query {query_id!r} judges document {doc_id!r} again "
                                                         f"(first on line {first})")
        qrels.setdefault(query_id, {})[doc_id] = relevance
    if not header_seen:
        raise DatasetFormatError(path, None, None, "empty: expected at least the header line")
    return qrels


def load_beir(folder: Path | str, split: str = "test", *, strict: bool = True) -> BeirDataset:
    """Load a BEIR folder. `strict`: every judgment must name a known query and document."""
    folder = Path(folder)
    paths = {"corpus": folder / "corpus.jsonl", "queries": folder / "queries.jsonl",
             "qrels": folder / "qrels" / f"{split}.tsv"}
    for path in paths.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (a BEIR folder has corpus.jsonl, queries.jsonl and "
                                    f"qrels/{split}.tsv)")
    corpus = read_corpus(paths["corpus"])
    queries = read_queries(paths["queries"])
    qrels = read_beir_qrels(paths["qrels"])
    if strict:
        _check_references(paths["qrels"], qrels, corpus, queries)
    return BeirDataset(folder.name, split, corpus, queries, qrels)


def _check_references(path: Path, qrels: Qrels, corpus: dict[str, CorpusDocument],
                      queries: dict[str, Query]) -> None:
    unknown_queries = sorted(q for q in qrels if q not in queries)
    unknown_docs = sorted({d for judged in qrels.values() for d in judged if d not in corpus})
    if not unknown_queries and not unknown_docs:
        return
    # Name the first offending line, so the file can be opened right there.
    for number, line in _numbered_lines(path):
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) == 3 and fields[0] in unknown_queries:
            raise DatasetFormatError(path, number, "query-id", f"{fields[0]!r} is not in queries.jsonl "
                                                               f"({len(unknown_queries)} unknown query ids)")
        if len(fields) == 3 and fields[1] in unknown_docs:
            raise DatasetFormatError(path, number, "corpus-id", f"{fields[1]!r} is not in corpus.jsonl "
                                                                f"({len(unknown_docs)} unknown document ids)")
