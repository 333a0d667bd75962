"""What a research run is asked and what it answers: the request and the decision brief."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Scalar = str | int | float | bool
Grade = Literal["high", "moderate", "low", "insufficient"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scope(_Strict):
    """Which of the tenant's documents count as evidence (the knowledge service's search filters)."""

    document_ids: list[str] | None = Field(None, max_length=1000)
    metadata: dict[str, Scalar] | None = None


class ResearchOptions(_Strict):
    hits_per_question: int = Field(8, ge=1, le=50, description="Hybrid search hits per (sub-)question")
    max_claims: int = Field(12, ge=1, le=50)
    evidence_tokens: int = Field(1200, ge=100, le=32_000,
                                 description="The synthesis model's budget for evidence (compression target)")
    sources: list[str] = Field(default_factory=list, max_length=20,
                               description="Web pages to fetch (on the tenant's allowlist) and ingest before "
                                           "searching; refusals are listed in the run, not fatal")


class ResearchRequest(_Strict):
    question: str = Field(min_length=3, max_length=4000)
    scope: Scope = Scope()
    depth: int = Field(1, ge=1, le=3, description="1: up to 3 sub-questions, 2: up to 5, 3: up to 7")
    options: ResearchOptions = ResearchOptions()

    def max_subquestions(self) -> int:
        return 1 + 2 * self.depth


class Citation(_Strict):
    """A span of a chunk, in the client's document id: `text[start:end]` of the chunk is the evidence."""

    document_id: str
    chunk_id: str
    start: int
    end: int


class Claim(_Strict):
    id: str
    text: str
    citations: list[Citation]
    grade: Grade | None = None
    grade_reason: str | None = None
    support: float | None = None  # verification: the cited text's support for the claim


class BriefSentence(_Strict):
    text: str
    citations: list[int]  # 1-based numbers of `DecisionBrief.sources`
    support: float | None = None
    supported: bool | None = None


class Source(_Strict):
    number: int
    document_id: str
    title: str
    link: str | None


class DecisionBrief(_Strict):
    question: str
    recommendation: list[BriefSentence]
    rationale: list[BriefSentence]
    claims: list[Claim]
    assumptions: list[str]
    risks: list[BriefSentence]
    safer_alternative: list[BriefSentence]
    confidence: float
    confidence_label: Literal["high", "moderate", "low", "insufficient"]
    sources: list[Source]
    generated_by: str  # the model that wrote it; "local-extractive" selects sentences, it writes none
    notes: list[str] = Field(default_factory=list)
    flagged: list[dict[str, Any]] = Field(default_factory=list)
