"""Typed knowledge-service configuration loaded from configs/knowledge.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stratmaster.settings import load_yaml_model

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "configs" / "knowledge.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChunkingConfig(_Strict):
    max_tokens: int = Field(256, ge=16, le=512)
    overlap_tokens: int = Field(32, ge=0, le=128)


class LimitsConfig(_Strict):
    max_document_chars: int = Field(1_000_000, ge=1000)
    max_batch_documents: int = Field(200, ge=1, le=10_000)


class FusionConfig(_Strict):
    method: Literal["rrf", "convex"] = "convex"
    keyword_weight: float = Field(0.4, ge=0.0, le=1.0)
    rrf_k: float = Field(60.0, gt=0)


class GraphExpansionConfig(_Strict):
    enabled: bool = False
    seed_hits: int = Field(5, ge=1, le=50)
    max_entities: int = Field(8, ge=1, le=100)
    max_chunks: int = Field(20, ge=1, le=200)
    weight: float = Field(0.1, ge=0.0, le=1.0)


class RetrievalConfig(_Strict):
    candidates: int = Field(200, ge=10, le=1000)
    fusion: FusionConfig = FusionConfig()
    graph_expansion: GraphExpansionConfig = GraphExpansionConfig()


PiiMode = Literal["allow", "redact", "reject"]


class PiiConfig(_Strict):
    """What ingestion does with a document in which stratmaster.security.pii finds personal data."""

    default: PiiMode = "allow"
    tenants: dict[str, PiiMode] = Field(default_factory=dict)
    # With redact: "encrypted" keeps the unredacted document as an encrypted object (needs
    # STRATMASTER_ENCRYPTION_KEYS); "none" keeps only the redacted text.
    keep_original: Literal["none", "encrypted"] = "none"

    def mode_for(self, tenant: str) -> PiiMode:
        return self.tenants.get(tenant, self.default)


class KnowledgeConfig(_Strict):
    chunking: ChunkingConfig = ChunkingConfig()
    limits: LimitsConfig = LimitsConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    pii: PiiConfig = PiiConfig()


def load_knowledge_config(path: Path = DEFAULT_PATH) -> KnowledgeConfig:
    return load_yaml_model(path, KnowledgeConfig)
