"""The interfaces every store implementation honours, and the records they exchange.

Each kind has an embedded implementation that needs no server and a server adapter
selected by its environment variable; `tests/conformance/` runs one suite per kind
against every implementation that can run here. Every method takes the tenant and every
query is filtered by tenant *inside* the store (a filter clause, a key prefix, an index
term), never by discarding other tenants' rows afterwards.

Embedded stores belong to one process (Qdrant's local mode locks its folder, a full-text
index has one writer): the knowledge service gives them a single owner deployment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from stratmaster.health import ComponentHealth


class StoreError(RuntimeError):
    """A store could not do what was asked (server down, corrupt data); never bad input."""


class ObjectNotFound(KeyError):
    """No object under that tenant and key."""


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """One retriever's hit: higher scores are better within one result list."""

    chunk_id: str
    document_id: str
    score: float


# --- keyword (BM25) ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KeywordDocument:
    """A chunk as the keyword index sees it: already analysed tokens (see knowledge.analysis)."""

    chunk_id: str
    document_id: str
    tokens: Sequence[str]


@runtime_checkable
class KeywordIndex(Protocol):
    backend: str
    embedded: bool

    def upsert(self, tenant: str, documents: Sequence[KeywordDocument]) -> None:
        """Insert or replace chunks by chunk_id."""

    def delete_document(self, tenant: str, document_id: str) -> int:
        """Remove every chunk of a document; returns how many were removed."""

    def search(self, tenant: str, query_tokens: Sequence[str], k: int,
               document_ids: Sequence[str] | None = None) -> list[ScoredChunk]:
        """BM25 over the tenant's chunks, best first; optionally only these documents."""

    def count(self, tenant: str) -> int: ...

    def ping(self) -> ComponentHealth: ...

    def close(self) -> None: ...


# --- vectors ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VectorItem:
    chunk_id: str
    document_id: str
    vector: Sequence[float]


@runtime_checkable
class VectorIndex(Protocol):
    backend: str
    embedded: bool
    dimension: int

    def upsert(self, tenant: str, items: Sequence[VectorItem]) -> None: ...

    def delete_document(self, tenant: str, document_id: str) -> int: ...

    def search(self, tenant: str, vector: Sequence[float], k: int,
               document_ids: Sequence[str] | None = None) -> list[ScoredChunk]:
        """Cosine similarity, best first."""

    def count(self, tenant: str) -> int: ...

    def ping(self) -> ComponentHealth: ...

    def close(self) -> None: ...


# --- knowledge graph ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Mention:
    """An entity mentioned in a chunk. `entity_id` is a stable slug of the normalised name."""

    chunk_id: str
    entity_id: str
    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class Entity:
    entity_id: str
    name: str
    kind: str
    mention_count: int
    document_count: int


@dataclass(frozen=True, slots=True)
class Neighbor:
    entity: Entity
    weight: float  # number of chunks in which both entities are mentioned


@dataclass(frozen=True, slots=True)
class Community:
    community_id: int
    entity_ids: tuple[str, ...]
    summary: str
    size: int = 0
    top_entities: tuple[str, ...] = field(default_factory=tuple)


@runtime_checkable
class GraphStore(Protocol):
    backend: str
    embedded: bool

    def replace_document(self, tenant: str, document_id: str, mentions: Sequence[Mention]) -> None:
        """Set a document's mentions (co-occurrence edges follow from them)."""

    def delete_document(self, tenant: str, document_id: str) -> None: ...

    def find_entities(self, tenant: str, query: str | None, limit: int) -> list[Entity]:
        """Entities whose name contains the query (all when None), most mentioned first."""

    def get_entity(self, tenant: str, entity_id: str) -> Entity | None: ...

    def neighbors(self, tenant: str, entity_id: str, limit: int) -> list[Neighbor]:
        """Entities co-mentioned with this one, heaviest edge first."""

    def entities_of_chunks(self, tenant: str, chunk_ids: Sequence[str]) -> dict[str, list[str]]: ...

    def chunks_of_entities(self, tenant: str, entity_ids: Sequence[str], limit: int) -> list[ScoredChunk]:
        """Chunks mentioning these entities, scored by how many of them each mentions."""

    def edges(self, tenant: str) -> list[tuple[str, str, float]]:
        """Every co-occurrence edge (a, b, weight) with a < b, for community detection."""

    def replace_communities(self, tenant: str, communities: Sequence[Community]) -> None: ...

    def communities(self, tenant: str) -> list[Community]: ...

    def ping(self) -> ComponentHealth: ...

    def close(self) -> None: ...


# --- objects ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object as `get` returns it: `size` and `sha256` describe the original bytes.

    `codec` says how the bytes are stored ("identity": as they are; "zstd": one zstd frame)
    and `stored_size` how many bytes that takes (the original size unless compressed).
    Objects written before codecs existed read as "identity".
    """

    key: str
    size: int
    sha256: str
    content_type: str
    modified_at: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    codec: str = "identity"
    stored_size: int | None = None  # None: the same as `size`
    key_id: str | None = None  # the encryption key it is sealed with; None: stored in plaintext

    def __post_init__(self) -> None:
        if self.stored_size is None:
            object.__setattr__(self, "stored_size", self.size)


@runtime_checkable
class ObjectStore(Protocol):
    backend: str
    embedded: bool

    def put(self, tenant: str, key: str, data: bytes, content_type: str = "application/octet-stream",
            metadata: dict[str, str] | None = None, compress: bool | None = None) -> ObjectInfo:
        """Store `data` under the key. `compress`: None lets the store's codec rule decide
        (zstd when large enough and worth it), True always stores zstd, False stores as is."""

    def get(self, tenant: str, key: str) -> bytes:
        """The original bytes, whatever the codec. Raises ObjectNotFound."""

    def stat(self, tenant: str, key: str) -> ObjectInfo | None: ...

    def delete(self, tenant: str, key: str) -> bool: ...

    def list(self, tenant: str, prefix: str = "") -> list[ObjectInfo]: ...

    def ping(self) -> ComponentHealth: ...

    def close(self) -> None: ...
