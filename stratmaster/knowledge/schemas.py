"""Request and response models of the knowledge API.

A batch is validated document by document (`parse_document`), so one malformed
document is rejected with its own error while the rest of the batch is ingested.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
Scalar = str | int | float | bool | None


class DocumentIn(BaseModel):
    """One document of an ingestion batch: exactly one of text, html or markdown."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    id: str = Field(min_length=1, max_length=256, description="The client's id; unique per tenant.")
    title: str = Field(min_length=1, max_length=1000)
    text: str | None = None
    html: str | None = None
    markdown: str | None = None
    source: str | None = Field(None, max_length=2048, description="URL or name of where it came from.")
    metadata: dict[str, Scalar] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _printable_id(cls, value: str) -> str:
        if _CONTROL.search(value) or value != value.strip():
            raise ValueError("id must not contain control characters or surrounding spaces")
        return value

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        if len(value) > 64:
            raise ValueError("metadata has more than 64 keys")
        if len(json.dumps(value)) > 16_384:
            raise ValueError("metadata is larger than 16 KiB as JSON")
        return value

    @model_validator(mode="after")
    def _exactly_one_body(self) -> DocumentIn:
        given = [name for name in ("text", "html", "markdown") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of text, html or markdown is required (got {', '.join(given) or 'none'})")
        return self

    @property
    def content_type(self) -> Literal["text", "html", "markdown"]:
        return "text" if self.text is not None else "html" if self.html is not None else "markdown"

    @property
    def body(self) -> str:
        return self.text if self.text is not None else self.html if self.html is not None else self.markdown or ""


class DocumentProblem(Exception):
    """A document the service refuses, with a status and a message naming the problem."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def parse_document(raw: Any, index: int) -> DocumentIn:
    """Validate one raw batch entry; raise DocumentProblem naming the field and the problem."""
    if not isinstance(raw, dict):
        raise DocumentProblem(422, "invalid_document", f"documents[{index}] must be a JSON object")
    try:
        return DocumentIn.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise DocumentProblem(422, "invalid_document", problems) from None


class IngestOutcome(BaseModel):
    """What happened to one document of a batch."""

    index: int
    id: str | None
    status: Literal["created", "updated", "unchanged", "rejected", "failed"]
    http_status: int
    chunks: int | None = None
    content_sha256: str | None = None
    error: dict[str, str] | None = None


class IngestResponse(BaseModel):
    results: list[IngestOutcome]
    counts: dict[str, int]


class SearchFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_ids: list[str] | None = Field(None, max_length=1000)
    metadata: dict[str, Scalar] | None = Field(None, description="Exact matches on document metadata.")


class FusionOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["rrf", "convex"] | None = None
    keyword_weight: float | None = Field(None, ge=0.0, le=1.0)
    rrf_k: float | None = Field(None, gt=0, le=1000)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)
    k: int = Field(10, ge=1, le=100)
    mode: Literal["keyword", "dense", "hybrid"] = "hybrid"
    filters: SearchFilters | None = None
    expand_graph: bool | None = Field(None, description="Add chunks linked to the top hits' entities.")
    fusion: FusionOverride | None = None

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must not be blank")
        return value


class RetrieverScore(BaseModel):
    rank: int
    score: float


class Provenance(BaseModel):
    title: str
    source: str | None
    content_sha256: str
    parser_version: str
    ingested_at: datetime
    metadata: dict[str, Scalar]


class SearchHit(BaseModel):
    document_id: str
    chunk_id: str
    text: str
    start: int
    end: int
    score: float
    retrievers: dict[str, RetrieverScore]
    provenance: Provenance


class SearchResponse(BaseModel):
    query: str
    mode: str
    fusion: dict[str, Any] | None
    hits: list[SearchHit]
    timings_ms: dict[str, float]


class ChunkOut(BaseModel):
    chunk_id: str
    ordinal: int
    text: str
    start: int
    end: int
    token_count: int


class DocumentOut(BaseModel):
    document_id: str
    title: str
    source: str | None
    content_type: str
    metadata: dict[str, Scalar]
    content_sha256: str
    parser_version: str
    object_key: str
    char_count: int
    chunk_count: int
    ingested_at: datetime
    updated_at: datetime
    chunks: list[ChunkOut] | None = None
