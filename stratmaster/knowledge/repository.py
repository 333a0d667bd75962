"""Persistence of document metadata and chunks (documents, document_chunks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select
from sqlalchemy.orm import Session

from stratmaster.db.models import Document, DocumentChunk


@dataclass(frozen=True, slots=True)
class StoredChunk:
    chunk_id: str
    document_id: str
    ordinal: int
    text: str
    start: int
    end: int
    token_count: int


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    document_id: str
    title: str
    source: str | None
    content_type: str
    metadata: dict[str, Any]
    content_sha256: str
    parser_version: str
    object_key: str
    char_count: int
    chunk_count: int
    ingested_at: datetime
    updated_at: datetime


# Plain column selects, read through a connection: hydrating a search's hits without ORM
# objects halves its cost.
_DOCUMENT_COLUMNS = (Document.document_id, Document.title, Document.source, Document.content_type,
                     Document.metadata_json, Document.content_sha256, Document.parser_version, Document.object_key,
                     Document.char_count, Document.chunk_count, Document.ingested_at, Document.updated_at)
_CHUNK_COLUMNS = (DocumentChunk.chunk_id, DocumentChunk.document_id, DocumentChunk.ordinal, DocumentChunk.text,
                  DocumentChunk.start, DocumentChunk.end, DocumentChunk.token_count)


def _record(row: Document) -> DocumentRecord:
    return DocumentRecord(row.document_id, row.title, row.source, row.content_type, dict(row.metadata_json),
                          row.content_sha256, row.parser_version, row.object_key, row.char_count,
                          row.chunk_count, row.ingested_at, row.updated_at)


def _chunk(row: DocumentChunk) -> StoredChunk:
    return StoredChunk(row.chunk_id, row.document_id, row.ordinal, row.text, row.start, row.end, row.token_count)


class DocumentRepository:
    """Documents and chunks of every tenant; every query is scoped by tenant."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, tenant: str, document_id: str) -> DocumentRecord | None:
        with Session(self._engine) as session:
            row = session.scalars(
                select(Document).where(Document.tenant == tenant, Document.document_id == document_id)
            ).first()
            return None if row is None else _record(row)

    def save(self, tenant: str, record: DocumentRecord, chunks: Sequence[StoredChunk]) -> None:
        """Replace a document's row and chunks in one transaction."""
        self.save_many(tenant, [(record, chunks)])

    def save_many(self, tenant: str, documents: Sequence[tuple[DocumentRecord, Sequence[StoredChunk]]]) -> None:
        """Replace several documents' rows and chunks in one transaction."""
        with self._engine.begin() as connection:
            for record, chunks in documents:
                self._replace(connection, tenant, record, chunks)

    @staticmethod
    def _replace(connection: Connection, tenant: str, record: DocumentRecord, chunks: Sequence[StoredChunk]) -> None:
        connection.execute(delete(DocumentChunk).where(DocumentChunk.tenant == tenant,
                                                       DocumentChunk.document_id == record.document_id))
        connection.execute(delete(Document).where(Document.tenant == tenant,
                                                  Document.document_id == record.document_id))
        connection.execute(Document.__table__.insert().values(
            tenant=tenant, document_id=record.document_id, title=record.title, source=record.source,
            content_type=record.content_type, metadata=record.metadata, content_sha256=record.content_sha256,
            parser_version=record.parser_version, object_key=record.object_key, char_count=record.char_count,
            chunk_count=record.chunk_count, ingested_at=record.ingested_at, updated_at=record.updated_at,
        ))
        if chunks:
            connection.execute(DocumentChunk.__table__.insert(), [
                {"tenant": tenant, "chunk_id": c.chunk_id, "document_id": c.document_id, "ordinal": c.ordinal,
                 "text": c.text, "start": c.start, "end": c.end, "token_count": c.token_count}
                for c in chunks
            ])

    def delete(self, tenant: str, document_id: str) -> bool:
        with self._engine.begin() as connection:
            connection.execute(delete(DocumentChunk).where(DocumentChunk.tenant == tenant,
                                                           DocumentChunk.document_id == document_id))
            result = connection.execute(delete(Document).where(Document.tenant == tenant,
                                                               Document.document_id == document_id))
        return result.rowcount > 0

    def chunks_of(self, tenant: str, document_id: str) -> list[StoredChunk]:
        with Session(self._engine) as session:
            rows = session.scalars(
                select(DocumentChunk).where(DocumentChunk.tenant == tenant, DocumentChunk.document_id == document_id)
                .order_by(DocumentChunk.ordinal)
            ).all()
            return [_chunk(r) for r in rows]

    def chunks(self, tenant: str, chunk_ids: Sequence[str]) -> dict[str, StoredChunk]:
        found: dict[str, StoredChunk] = {}
        ids = list(dict.fromkeys(chunk_ids))
        with self._engine.connect() as connection:
            for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
                rows = connection.execute(select(*_CHUNK_COLUMNS).where(
                    DocumentChunk.tenant == tenant, DocumentChunk.chunk_id.in_(ids[start:start + 500])))
                found.update((row[0], StoredChunk(*row)) for row in rows)
        return found

    def documents(self, tenant: str, document_ids: Sequence[str]) -> dict[str, DocumentRecord]:
        found: dict[str, DocumentRecord] = {}
        ids = list(dict.fromkeys(document_ids))
        with self._engine.connect() as connection:
            for start in range(0, len(ids), 500):
                rows = connection.execute(select(*_DOCUMENT_COLUMNS).where(
                    Document.tenant == tenant, Document.document_id.in_(ids[start:start + 500])))
                found.update((row[0], DocumentRecord(*row[:4], dict(row[4]), *row[5:])) for row in rows)
        return found

    def document_ids_matching(self, tenant: str, metadata: dict[str, Any], limit: int = 10_000) -> list[str]:
        """Ids of documents whose metadata has every given key with exactly that value."""
        statement = select(Document.document_id, Document.metadata_json).where(Document.tenant == tenant)
        matches = []
        with self._engine.connect() as connection:
            for document_id, stored in connection.execute(statement):
                if all(stored.get(key) == value for key, value in metadata.items()):
                    matches.append(document_id)
                    if len(matches) >= limit:
                        break
        return matches

    def counts(self, tenant: str) -> dict[str, int]:
        with self._engine.connect() as connection:
            documents = connection.execute(select(func.count()).select_from(Document)
                                           .where(Document.tenant == tenant)).scalar_one()
            chunks = connection.execute(select(func.count()).select_from(DocumentChunk)
                                        .where(DocumentChunk.tenant == tenant)).scalar_one()
        return {"documents": documents, "chunks": chunks}
