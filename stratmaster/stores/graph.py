"""Knowledge-graph stores: an embedded SQLite graph and a NebulaGraph adapter.

The graph is bipartite underneath: chunks mention entities. Two entities are linked when
they are mentioned in the same chunk, and the weight of that co-occurrence edge is the
number of chunks mentioning both. Neither store keeps edges of its own: they are always
computed from the mentions, so `replace_document`/`delete_document` cannot leave a stale
edge behind, and an entity no chunk mentions any more is deleted with its last mention.

Assumptions shared by both stores:
* a chunk id is unique within a tenant (chunk ids embed their document id);
* an entity's `name` and `kind` are those of the first mention that created it; they
  change only if every mention goes and the entity is created again;
* ordering ties are broken deterministically: `find_entities` by mention count, document
  count, name, id; `neighbors` by weight, mention count, id; `chunks_of_entities` by
  score, document id, chunk id; `entities_of_chunks` lists ids sorted, with an entry
  (possibly empty) for every chunk asked about.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from stratmaster.health import ComponentHealth, probed
from stratmaster.settings import ConfigurationError, Settings
from stratmaster.stores.protocols import Community, Entity, GraphStore, Mention, Neighbor, ScoredChunk, StoreError

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
SCHEMA_VERSION = 1


def _check_tenant(tenant: str) -> None:
    if not isinstance(tenant, str) or not tenant:
        raise ValueError("tenant must be a non-empty string")


def _check_mentions(mentions: Sequence[Mention]) -> None:
    for mention in mentions:
        if not mention.chunk_id or not mention.entity_id or not mention.name or not mention.kind:
            raise ValueError(f"a mention needs chunk_id, entity_id, name and kind: {mention!r}")


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


# =========================================================================================
# SQLite
# =========================================================================================
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    tenant    TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    PRIMARY KEY (tenant, entity_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS mentions (
    tenant      TEXT NOT NULL,
    document_id TEXT NOT NULL,
    chunk_id    TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    PRIMARY KEY (tenant, document_id, chunk_id, entity_id)
) WITHOUT ROWID;
-- entity -> its chunks (neighbors, chunks_of_entities, counts)
CREATE INDEX IF NOT EXISTS mentions_by_entity ON mentions (tenant, entity_id, document_id, chunk_id);
-- chunk -> its entities (the co-occurrence self-join, entities_of_chunks)
CREATE INDEX IF NOT EXISTS mentions_by_chunk ON mentions (tenant, chunk_id, document_id, entity_id);

CREATE TABLE IF NOT EXISTS communities (
    tenant       TEXT NOT NULL,
    community_id INTEGER NOT NULL,
    entity_ids   TEXT NOT NULL,  -- JSON array
    summary      TEXT NOT NULL,
    size         INTEGER NOT NULL,
    top          TEXT NOT NULL,  -- JSON array
    PRIMARY KEY (tenant, community_id)
) WITHOUT ROWID;
"""

# Mention statistics of a set of a tenant's entities; callers add the set.
_ENTITY_STATS = """
    SELECT e.entity_id, e.name, e.kind, COUNT(*) AS mentions, COUNT(DISTINCT m.document_id) AS documents
    FROM entities e
    JOIN mentions m ON m.tenant = e.tenant AND m.entity_id = e.entity_id
    WHERE e.tenant = ?
"""


def _entity(row: sqlite3.Row | tuple[Any, ...]) -> Entity:
    return Entity(entity_id=row[0], name=row[1], kind=row[2], mention_count=int(row[3]), document_count=int(row[4]))


class SqliteGraphStore:
    """`GraphStore` in one SQLite file (WAL, busy timeout), edges computed by self-join.

    Each thread gets its own connection; writes additionally take a process-wide lock and
    `BEGIN IMMEDIATE`, so writers in this process queue on the lock and writers in other
    processes wait on SQLite's file lock (up to the busy timeout) instead of failing.
    The co-occurrence self-join costs the sum over chunks of (entities per chunk)^2 for
    `edges()`, and the same restricted to one entity's chunks for `neighbors()`.
    """

    backend = "embedded-graph"
    embedded = True

    def __init__(self, path: str | Path) -> None:
        if str(path) == ":memory:":
            raise ValueError("SqliteGraphStore needs a file: each thread opens its own connection")
        self.path = Path(path).expanduser().resolve()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._write_lock:
                connection = self._connection()
                connection.executescript(_SCHEMA)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"graph store at {self.path} unavailable: {exc}") from exc

    # --- connections ----------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"graph store at {self.path} is closed")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE in _write).
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                         timeout=BUSY_TIMEOUT_MS / 1000)
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            # Python's str.lower, so substring search folds case beyond ASCII, as Nebula's lower().
            connection.create_function("py_lower", 1, lambda s: s.lower() if isinstance(s, str) else s,
                                       deterministic=True)
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def _read(self, operation: str) -> Iterator[sqlite3.Connection]:
        try:
            yield self._connection()
        except sqlite3.Error as exc:
            raise StoreError(f"graph store at {self.path} failed {operation}: {exc}") from exc

    @contextmanager
    def _write(self, operation: str) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            connection = self._connection()
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"graph store at {self.path} failed {operation}: {exc}") from exc
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException as exc:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    logger.exception("rollback of %s failed on %s", operation, self.path)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"graph store at {self.path} failed {operation}: {exc}") from exc
                raise

    # --- writes ---------------------------------------------------------------------
    @staticmethod
    def _remove_document(connection: sqlite3.Connection, tenant: str, document_id: str) -> None:
        old = [row[0] for row in connection.execute(
            "SELECT DISTINCT entity_id FROM mentions WHERE tenant = ? AND document_id = ?", (tenant, document_id))]
        connection.execute("DELETE FROM mentions WHERE tenant = ? AND document_id = ?", (tenant, document_id))
        if old:
            connection.execute(
                """DELETE FROM entities
                   WHERE tenant = ? AND entity_id IN (SELECT value FROM json_each(?))
                     AND NOT EXISTS (SELECT 1 FROM mentions m
                                     WHERE m.tenant = entities.tenant AND m.entity_id = entities.entity_id)""",
                (tenant, json.dumps(old)),
            )

    def replace_document(self, tenant: str, document_id: str, mentions: Sequence[Mention]) -> None:
        """Set the document's mentions: old ones go (and entities left unmentioned), new ones come."""
        _check_tenant(tenant)
        _check_mentions(mentions)
        with self._write("replace document") as connection:
            # Orphans are removed before the new entities are inserted, so an entity that
            # only this document mentioned takes its name from the new mentions.
            self._remove_document(connection, tenant, document_id)
            connection.executemany(
                "INSERT INTO entities (tenant, entity_id, name, kind) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(tenant, m.entity_id, m.name, m.kind) for m in mentions],
            )
            connection.executemany(
                "INSERT OR IGNORE INTO mentions (tenant, document_id, chunk_id, entity_id) VALUES (?, ?, ?, ?)",
                [(tenant, document_id, m.chunk_id, m.entity_id) for m in mentions],
            )

    def delete_document(self, tenant: str, document_id: str) -> None:
        _check_tenant(tenant)
        with self._write("delete document") as connection:
            self._remove_document(connection, tenant, document_id)

    def replace_communities(self, tenant: str, communities: Sequence[Community]) -> None:
        _check_tenant(tenant)
        with self._write("replace communities") as connection:
            connection.execute("DELETE FROM communities WHERE tenant = ?", (tenant,))
            connection.executemany(
                "INSERT INTO communities (tenant, community_id, entity_ids, summary, size, top) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(tenant, c.community_id, json.dumps(list(c.entity_ids)), c.summary, c.size,
                  json.dumps(list(c.top_entities))) for c in communities],
            )

    # --- reads ----------------------------------------------------------------------
    def find_entities(self, tenant: str, query: str | None, limit: int) -> list[Entity]:
        """Entities whose name contains `query` (case-insensitive; all when None), most mentioned first."""
        _check_tenant(tenant)
        if limit < 1:
            return []
        sql = _ENTITY_STATS
        params: list[Any] = [tenant]
        if query is not None:
            sql += " AND instr(py_lower(e.name), ?) > 0"
            params.append(query.lower())
        sql += " GROUP BY e.entity_id ORDER BY mentions DESC, documents DESC, e.name, e.entity_id LIMIT ?"
        params.append(limit)
        with self._read("find entities") as connection:
            return [_entity(row) for row in connection.execute(sql, params)]

    def get_entity(self, tenant: str, entity_id: str) -> Entity | None:
        _check_tenant(tenant)
        with self._read("get entity") as connection:
            row = connection.execute(_ENTITY_STATS + " AND e.entity_id = ? GROUP BY e.entity_id",
                                     (tenant, entity_id)).fetchone()
        return None if row is None else _entity(row)

    def neighbors(self, tenant: str, entity_id: str, limit: int) -> list[Neighbor]:
        """Entities sharing a chunk with this one; weight = number of shared chunks."""
        _check_tenant(tenant)
        if limit < 1:
            return []
        # CROSS JOIN fixes the join order (SQLite keeps it as written): start from this
        # entity's chunks, not from every mention of the tenant.
        sql = """
            WITH pairs AS MATERIALIZED (
                SELECT b.entity_id AS entity_id, COUNT(*) AS weight
                FROM mentions a
                CROSS JOIN mentions b ON b.tenant = a.tenant AND b.chunk_id = a.chunk_id
                                     AND b.document_id = a.document_id AND b.entity_id <> a.entity_id
                WHERE a.tenant = ? AND a.entity_id = ?
                GROUP BY b.entity_id
            )
            SELECT e.entity_id, e.name, e.kind, COUNT(*) AS mentions, COUNT(DISTINCT m.document_id) AS documents,
                   p.weight
            FROM pairs p
            CROSS JOIN entities e ON e.tenant = ? AND e.entity_id = p.entity_id
            CROSS JOIN mentions m ON m.tenant = e.tenant AND m.entity_id = e.entity_id
            GROUP BY e.entity_id
            ORDER BY p.weight DESC, mentions DESC, e.entity_id
            LIMIT ?
        """
        with self._read("neighbors") as connection:
            rows = connection.execute(sql, (tenant, entity_id, tenant, limit)).fetchall()
        return [Neighbor(entity=_entity(row), weight=float(row[5])) for row in rows]

    def entities_of_chunks(self, tenant: str, chunk_ids: Sequence[str]) -> dict[str, list[str]]:
        _check_tenant(tenant)
        wanted = _unique(chunk_ids)
        result: dict[str, list[str]] = {chunk_id: [] for chunk_id in wanted}
        if not wanted:
            return result
        with self._read("entities of chunks") as connection:
            rows = connection.execute(
                "SELECT DISTINCT chunk_id, entity_id FROM mentions "
                "WHERE tenant = ? AND chunk_id IN (SELECT value FROM json_each(?)) ORDER BY chunk_id, entity_id",
                (tenant, json.dumps(wanted)),
            ).fetchall()
        for chunk_id, entity_id in rows:
            result[chunk_id].append(entity_id)
        return result

    def chunks_of_entities(self, tenant: str, entity_ids: Sequence[str], limit: int) -> list[ScoredChunk]:
        """Chunks mentioning any of the entities; score = how many of them the chunk mentions."""
        _check_tenant(tenant)
        wanted = _unique(entity_ids)
        if not wanted or limit < 1:
            return []
        with self._read("chunks of entities") as connection:
            rows = connection.execute(
                # From the wanted ids into the entity index, not a scan of the tenant.
                """SELECT m.chunk_id, m.document_id, COUNT(*) AS score
                   FROM json_each(?) AS wanted
                   CROSS JOIN mentions m ON m.tenant = ? AND m.entity_id = wanted.value
                   GROUP BY m.document_id, m.chunk_id
                   ORDER BY score DESC, m.document_id, m.chunk_id
                   LIMIT ?""",
                (json.dumps(wanted), tenant, limit),
            ).fetchall()
        return [ScoredChunk(chunk_id=row[0], document_id=row[1], score=float(row[2])) for row in rows]

    def edges(self, tenant: str) -> list[tuple[str, str, float]]:
        _check_tenant(tenant)
        with self._read("edges") as connection:
            rows = connection.execute(
                """SELECT a.entity_id, b.entity_id, COUNT(*) AS weight
                   FROM mentions a
                   JOIN mentions b ON b.tenant = a.tenant AND b.chunk_id = a.chunk_id
                                  AND b.document_id = a.document_id AND b.entity_id > a.entity_id
                   WHERE a.tenant = ?
                   GROUP BY a.entity_id, b.entity_id
                   ORDER BY a.entity_id, b.entity_id""",
                (tenant,),
            ).fetchall()
        return [(a, b, float(weight)) for a, b, weight in rows]

    def communities(self, tenant: str) -> list[Community]:
        _check_tenant(tenant)
        with self._read("communities") as connection:
            rows = connection.execute(
                "SELECT community_id, entity_ids, summary, size, top FROM communities "
                "WHERE tenant = ? ORDER BY community_id",
                (tenant,),
            ).fetchall()
        return [Community(community_id=int(row[0]), entity_ids=tuple(json.loads(row[1])), summary=row[2],
                          size=int(row[3]), top_entities=tuple(json.loads(row[4]))) for row in rows]

    # --- lifecycle ------------------------------------------------------------------
    def ping(self) -> ComponentHealth:
        started = time.perf_counter()
        try:
            with self._read("ping") as connection:
                connection.execute("SELECT 1 FROM entities LIMIT 1").fetchall()
        except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises
            return probed("graph", self.backend, self.embedded, started, str(exc))
        return probed("graph", self.backend, self.embedded, started)

    def close(self) -> None:
        """Close every thread's connection; later calls raise StoreError. Idempotent."""
        with self._write_lock, self._connections_lock:
            self._closed = True
            for connection in self._connections:
                try:
                    connection.close()
                except sqlite3.Error:  # pragma: no cover - closing is best effort
                    pass
            self._connections.clear()


# =========================================================================================
# NebulaGraph
# =========================================================================================
#
# Schema (space `stratmaster` by default; `NebulaGraphStore.schema_statements()`):
#
#   CREATE SPACE IF NOT EXISTS stratmaster (vid_type = FIXED_STRING(34), ...)
#   TAG  entity(tenant, entity_id, name, kind)             VID "e" + hash(tenant, entity_id)
#   TAG  chunk(tenant, document_id, chunk_id)              VID "c" + hash(tenant, chunk_id)
#   TAG  community(tenant, community_id, entity_ids, summary, size, top)
#                                                          VID "m" + hash(tenant, community_id)
#   EDGE mentions(tenant)                                  chunk -> entity
#   TAG INDEX entity_by_tenant          ON entity(tenant(64))
#   TAG INDEX chunk_by_tenant_document  ON chunk(tenant(64), document_id(128))
#   TAG INDEX community_by_tenant       ON community(tenant(64))
#
# VIDs hash the tenant in, so tenants cannot address each other's vertices; every
# statement also filters on (or writes) the tenant property. Co-occurrence is the
# two-hop pattern entity <-mentions- chunk -mentions-> entity, counted by MATCH.
# Strings are written as escaped literals (`ngql_string`): nGQL parameters are not
# accepted everywhere a value appears (INSERT values, VID lists).
#
# NebulaGraph has no multi-statement transactions: replace_document is a sequence of
# idempotent steps (find the old entities, delete the old chunks with their edges,
# delete entities left without mentions, insert entities, chunks, edges). A failure
# part-way leaves the document partly written; calling replace_document again repairs
# it. Two writers replacing documents that share an entity can race on the orphan
# check, so the knowledge service keeps one writer per tenant.
#
# String indexes cover a fixed prefix, so this store refuses tenant ids longer than
# 64 bytes (the platform's tenants are at most 64 characters of [a-z0-9_-]) and document
# ids longer than 128 bytes rather than rely on prefix matches.

VID_LENGTH = 34  # one letter + "_" + 32 hex digits (a 128-bit BLAKE2b digest)
INSERT_BATCH = 200
MAX_TENANT_BYTES = 64
MAX_DOCUMENT_ID_BYTES = 128
SCHEMA_WAIT_S = 30.0  # schema changes take effect after a heartbeat (10 s by default)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def ngql_string(value: str) -> str:
    """A double-quoted nGQL string literal of `value`.

    Backslash, double quote and the control characters nGQL has escapes for are escaped;
    other control characters (which nGQL cannot carry in a literal) become spaces.
    """
    out = []
    for char in str(value):
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(" ")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _ngql_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(ngql_string(v) for v in values) + "]"


def _vid(prefix: str, *parts: str) -> str:
    # A JSON array, not a joined string: no choice of ids makes two tuples collide.
    digest = hashlib.blake2b(json.dumps(parts).encode("utf-8"), digest_size=16).hexdigest()
    return f"{prefix}_{digest}"


def entity_vid(tenant: str, entity_id: str) -> str:
    return _vid("e", tenant, entity_id)


def chunk_vid(tenant: str, chunk_id: str) -> str:
    return _vid("c", tenant, chunk_id)


def community_vid(tenant: str, community_id: int) -> str:
    return _vid("m", tenant, str(community_id))


class NebulaStatements:
    """The nGQL every `NebulaGraphStore` operation sends: pure functions of their arguments."""

    @staticmethod
    def schema(space: str, partitions: int = 10, replicas: int = 1) -> list[str]:
        return [
            f"CREATE SPACE IF NOT EXISTS `{space}` (partition_num = {partitions}, replica_factor = {replicas}, "
            f"vid_type = FIXED_STRING({VID_LENGTH}))",
            f"USE `{space}`",
            "CREATE TAG IF NOT EXISTS entity(tenant string NOT NULL, entity_id string NOT NULL, "
            "name string NOT NULL, kind string NOT NULL)",
            "CREATE TAG IF NOT EXISTS chunk(tenant string NOT NULL, document_id string NOT NULL, "
            "chunk_id string NOT NULL)",
            "CREATE TAG IF NOT EXISTS community(tenant string NOT NULL, community_id int NOT NULL, "
            "entity_ids string NOT NULL, summary string NOT NULL, size int NOT NULL, top string NOT NULL)",
            "CREATE EDGE IF NOT EXISTS mentions(tenant string NOT NULL)",
            f"CREATE TAG INDEX IF NOT EXISTS entity_by_tenant ON entity(tenant({MAX_TENANT_BYTES}))",
            f"CREATE TAG INDEX IF NOT EXISTS chunk_by_tenant_document ON chunk(tenant({MAX_TENANT_BYTES}), "
            f"document_id({MAX_DOCUMENT_ID_BYTES}))",
            f"CREATE TAG INDEX IF NOT EXISTS community_by_tenant ON community(tenant({MAX_TENANT_BYTES}))",
        ]

    @staticmethod
    def _chunks_of_document(tenant: str, document_id: str) -> str:
        return (f"LOOKUP ON chunk WHERE chunk.tenant == {ngql_string(tenant)} "
                f"AND chunk.document_id == {ngql_string(document_id)} YIELD id(vertex) AS vid")

    @classmethod
    def entities_of_document(cls, tenant: str, document_id: str) -> str:
        return (cls._chunks_of_document(tenant, document_id)
                + f" | GO FROM $-.vid OVER mentions WHERE properties($$).tenant == {ngql_string(tenant)} "
                  "YIELD DISTINCT dst(edge) AS vid")

    @classmethod
    def delete_chunks_of_document(cls, tenant: str, document_id: str) -> str:
        return cls._chunks_of_document(tenant, document_id) + " | DELETE VERTEX $-.vid WITH EDGE"

    @staticmethod
    def mentioned_entities(tenant: str, vids: Sequence[str]) -> str:
        return (f"MATCH (c:chunk)-[:mentions]->(e:entity) WHERE id(e) IN {_ngql_list(vids)} "
                f"AND c.chunk.tenant == {ngql_string(tenant)} RETURN DISTINCT id(e) AS vid")

    @staticmethod
    def delete_entities(tenant: str, vids: Sequence[str]) -> str:
        return (f"FETCH PROP ON entity {', '.join(ngql_string(v) for v in vids)} "
                "YIELD id(vertex) AS vid, properties(vertex).tenant AS tenant "
                f"| YIELD $-.vid AS vid WHERE $-.tenant == {ngql_string(tenant)} "
                "| DELETE VERTEX $-.vid WITH EDGE")

    @staticmethod
    def insert_entities(tenant: str, mentions: Sequence[Mention]) -> str:
        values = ", ".join(
            f"{ngql_string(entity_vid(tenant, m.entity_id))}:({ngql_string(tenant)}, {ngql_string(m.entity_id)}, "
            f"{ngql_string(m.name)}, {ngql_string(m.kind)})"
            for m in mentions
        )
        return f"INSERT VERTEX IF NOT EXISTS entity(tenant, entity_id, name, kind) VALUES {values}"

    @staticmethod
    def insert_chunks(tenant: str, document_id: str, chunk_ids: Sequence[str]) -> str:
        values = ", ".join(
            f"{ngql_string(chunk_vid(tenant, c))}:({ngql_string(tenant)}, {ngql_string(document_id)}, "
            f"{ngql_string(c)})"
            for c in chunk_ids
        )
        return f"INSERT VERTEX chunk(tenant, document_id, chunk_id) VALUES {values}"

    @staticmethod
    def insert_mentions(tenant: str, pairs: Sequence[tuple[str, str]]) -> str:
        values = ", ".join(
            f"{ngql_string(chunk_vid(tenant, c))}->{ngql_string(entity_vid(tenant, e))}:({ngql_string(tenant)})"
            for c, e in pairs
        )
        return f"INSERT EDGE mentions(tenant) VALUES {values}"

    @staticmethod
    def _entity_stats_return(alias: str, chunk: str) -> str:
        return (f"RETURN {alias}.entity.entity_id AS entity_id, {alias}.entity.name AS name, "
                f"{alias}.entity.kind AS kind, count(DISTINCT id({chunk})) AS mentions, "
                f"count(DISTINCT {chunk}.chunk.document_id) AS documents")

    @classmethod
    def find_entities(cls, tenant: str, query: str | None, limit: int) -> str:
        where = f"e.entity.tenant == {ngql_string(tenant)} AND c.chunk.tenant == {ngql_string(tenant)}"
        if query is not None:
            where += f" AND lower(e.entity.name) CONTAINS {ngql_string(query.lower())}"
        return (f"MATCH (c:chunk)-[:mentions]->(e:entity) WHERE {where} "
                + cls._entity_stats_return("e", "c")
                + f" ORDER BY mentions DESC, documents DESC, name, entity_id LIMIT {int(limit)}")

    @classmethod
    def get_entity(cls, tenant: str, entity_id: str) -> str:
        return (f"MATCH (c:chunk)-[:mentions]->(e:entity) WHERE id(e) == {ngql_string(entity_vid(tenant, entity_id))} "
                f"AND e.entity.tenant == {ngql_string(tenant)} AND c.chunk.tenant == {ngql_string(tenant)} "
                + cls._entity_stats_return("e", "c"))

    @staticmethod
    def neighbor_weights(tenant: str, entity_id: str) -> str:
        t = ngql_string(tenant)
        return (
            "MATCH (e:entity)<-[:mentions]-(c:chunk)-[:mentions]->(n:entity) "
            f"WHERE id(e) == {ngql_string(entity_vid(tenant, entity_id))} AND c.chunk.tenant == {t} "
            f"AND n.entity.tenant == {t} AND id(n) != id(e) "
            "RETURN n.entity.entity_id AS entity_id, count(DISTINCT id(c)) AS weight"
        )

    @classmethod
    def entity_stats(cls, tenant: str, entity_ids: Sequence[str]) -> str:
        t = ngql_string(tenant)
        return (f"MATCH (c:chunk)-[:mentions]->(e:entity) WHERE id(e) IN "
                f"{_ngql_list([entity_vid(tenant, e) for e in entity_ids])} "
                f"AND e.entity.tenant == {t} AND c.chunk.tenant == {t} "
                + cls._entity_stats_return("e", "c"))

    @staticmethod
    def entities_of_chunks(tenant: str, chunk_ids: Sequence[str]) -> str:
        t = ngql_string(tenant)
        return (f"MATCH (c:chunk)-[:mentions]->(e:entity) WHERE id(c) IN "
                f"{_ngql_list([chunk_vid(tenant, c) for c in chunk_ids])} "
                f"AND c.chunk.tenant == {t} AND e.entity.tenant == {t} "
                "RETURN DISTINCT c.chunk.chunk_id AS chunk_id, e.entity.entity_id AS entity_id "
                "ORDER BY chunk_id, entity_id")

    @staticmethod
    def chunks_of_entities(tenant: str, entity_ids: Sequence[str], limit: int) -> str:
        return (f"MATCH (c:chunk)-[:mentions]->(e:entity) WHERE id(e) IN "
                f"{_ngql_list([entity_vid(tenant, e) for e in entity_ids])} "
                f"AND c.chunk.tenant == {ngql_string(tenant)} "
                "RETURN c.chunk.chunk_id AS chunk_id, c.chunk.document_id AS document_id, "
                "count(DISTINCT id(e)) AS score "
                f"ORDER BY score DESC, document_id, chunk_id LIMIT {int(limit)}")

    @staticmethod
    def edges(tenant: str) -> str:
        t = ngql_string(tenant)
        return ("MATCH (a:entity)<-[:mentions]-(c:chunk)-[:mentions]->(b:entity) "
                f"WHERE c.chunk.tenant == {t} AND a.entity.tenant == {t} AND b.entity.tenant == {t} "
                "AND a.entity.entity_id < b.entity.entity_id "
                "RETURN a.entity.entity_id AS a, b.entity.entity_id AS b, count(DISTINCT id(c)) AS weight "
                "ORDER BY a, b")

    @staticmethod
    def delete_communities(tenant: str) -> str:
        return (f"LOOKUP ON community WHERE community.tenant == {ngql_string(tenant)} YIELD id(vertex) AS vid "
                "| DELETE VERTEX $-.vid")

    @staticmethod
    def insert_communities(tenant: str, communities: Sequence[Community]) -> str:
        values = ", ".join(
            f"{ngql_string(community_vid(tenant, c.community_id))}:({ngql_string(tenant)}, {int(c.community_id)}, "
            f"{ngql_string(json.dumps(list(c.entity_ids)))}, {ngql_string(c.summary)}, {int(c.size)}, "
            f"{ngql_string(json.dumps(list(c.top_entities)))})"
            for c in communities
        )
        return f"INSERT VERTEX community(tenant, community_id, entity_ids, summary, size, top) VALUES {values}"

    @staticmethod
    def communities(tenant: str) -> str:
        return (f"LOOKUP ON community WHERE community.tenant == {ngql_string(tenant)} "
                "YIELD properties(vertex).community_id AS community_id, properties(vertex).entity_ids AS entity_ids, "
                "properties(vertex).summary AS summary, properties(vertex).size AS size, "
                "properties(vertex).top AS top")


def _check_nebula_keys(tenant: str, document_id: str | None = None) -> None:
    _check_tenant(tenant)
    if len(tenant.encode("utf-8")) > MAX_TENANT_BYTES:
        raise ValueError(f"tenant ids are at most {MAX_TENANT_BYTES} bytes in the NebulaGraph store")
    if document_id is not None and len(document_id.encode("utf-8")) > MAX_DOCUMENT_ID_BYTES:
        raise ValueError(f"document ids are at most {MAX_DOCUMENT_ID_BYTES} bytes in the NebulaGraph store")


class NebulaSession(Protocol):
    """What the store needs of a nebula3 `Session` (and what test fakes provide)."""

    def execute(self, stmt: str) -> Any: ...

    def release(self) -> None: ...


def parse_addresses(addresses: str | Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """"host:port,host:port" (as NEBULA_ADDRESS) or a list of (host, port)."""
    if isinstance(addresses, str):
        parsed = []
        for part in addresses.split(","):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"nebula address must be host:port, got {part!r}")
            parsed.append((host, int(port)))
        return parsed
    return [(str(host), int(port)) for host, port in addresses]


class NebulaGraphStore:
    """`GraphStore` on a NebulaGraph cluster through nebula3-python (schema in the comment above).

    Sessions come from a `ConnectionPool` created on first use and are kept for reuse
    (each bound to the space with `USE` once); a session that fails at the transport
    level is released and replaced. Tests pass `session_factory` to run against a fake.
    """

    backend = "nebulagraph"
    embedded = False

    def __init__(self, addresses: str | Sequence[tuple[str, int]], user: str, password: str,
                 space: str = "stratmaster", *, timeout_ms: int = 10_000, max_connections: int = 10,
                 session_factory: Callable[[], NebulaSession] | None = None) -> None:
        if not _IDENTIFIER.match(space):
            raise ValueError(f"space must be an identifier, got {space!r}")
        self.addresses = parse_addresses(addresses)
        self.location = ",".join(f"{host}:{port}" for host, port in self.addresses)
        self.space = space
        self._user = user
        self._password = password
        self._timeout_ms = timeout_ms
        self._max_connections = max_connections
        self._session_factory = session_factory
        self._pool: Any = None
        self._idle: list[NebulaSession] = []
        self._lock = threading.Lock()
        self._closed = False

    # --- sessions -------------------------------------------------------------------
    def _ensure_pool(self) -> Any:
        with self._lock:
            if self._pool is None:
                from nebula3.Config import Config
                from nebula3.gclient.net import ConnectionPool

                config = Config()
                config.max_connection_pool_size = self._max_connections
                config.timeout = self._timeout_ms
                pool = ConnectionPool()
                pool.init(self.addresses, config)  # raises when a graphd is unreachable
                self._pool = pool
            return self._pool

    def _raw_session(self) -> NebulaSession:
        if self._session_factory is not None:
            return self._session_factory()
        return self._ensure_pool().get_session(self._user, self._password)

    def _new_session(self) -> NebulaSession:
        session = self._raw_session()
        result = session.execute(f"USE `{self.space}`")
        if not result.is_succeeded():
            session.release()
            raise StoreError(f"nebulagraph at {self.location}: USE {self.space} failed: {result.error_msg()}")
        return session

    @contextmanager
    def _session(self) -> Iterator[NebulaSession]:
        if self._closed:
            raise StoreError(f"nebulagraph store at {self.location} is closed")
        with self._lock:
            session = self._idle.pop() if self._idle else None
        try:
            if session is None:
                session = self._new_session()
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - pool/auth failures are store failures
            raise StoreError(f"nebulagraph at {self.location}: no session: {type(exc).__name__}: {exc}") from exc
        healthy = True
        try:
            yield session
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - transport failures (IOErrorException, ...)
            healthy = False
            raise StoreError(f"nebulagraph at {self.location}: {type(exc).__name__}: {exc}") from exc
        finally:
            if healthy and not self._closed:
                with self._lock:
                    self._idle.append(session)
            else:
                try:
                    session.release()
                except Exception:  # noqa: BLE001 - the session is being thrown away
                    logger.debug("releasing a failed nebula session", exc_info=True)

    def _run(self, statement: str) -> list[dict[str, Any]]:
        with self._session() as session:
            result = session.execute(statement)
            if not result.is_succeeded():
                raise StoreError(f"nebulagraph at {self.location} rejected {statement[:120]!r}...: "
                                 f"{result.error_msg()}")
            return list(result.as_primitive())

    def create_schema(self, partitions: int = 10, replicas: int = 1, wait_s: float = SCHEMA_WAIT_S,
                      retry_interval_s: float = 2.0) -> None:
        """Create the space, tags, edge and indexes if missing (an operator's step, not per start-up).

        NebulaGraph applies schema changes after the next heartbeat (10 s by default), so
        each statement is retried for up to `wait_s` (the `USE` after `CREATE SPACE`, an
        index on a tag just created). Indexes created over existing data need
        `REBUILD TAG INDEX`; on a new space they do not. The session is not kept.
        """
        try:
            session = self._raw_session()
        except Exception as exc:  # noqa: BLE001 - pool/auth failures are store failures
            raise StoreError(f"nebulagraph at {self.location}: no session: {type(exc).__name__}: {exc}") from exc
        try:
            for statement in NebulaStatements.schema(self.space, partitions, replicas):
                # A space or tag is usable only after the next heartbeat: retry until then.
                deadline = time.monotonic() + wait_s
                while True:
                    result = session.execute(statement)
                    if result.is_succeeded():
                        break
                    if time.monotonic() >= deadline:
                        raise StoreError(f"nebulagraph schema statement failed: {statement!r}: {result.error_msg()}")
                    time.sleep(retry_interval_s)
        finally:
            session.release()

    # --- writes ---------------------------------------------------------------------
    def _remove_document(self, tenant: str, document_id: str) -> None:
        old = [row["vid"] for row in self._run(NebulaStatements.entities_of_document(tenant, document_id))]
        self._run(NebulaStatements.delete_chunks_of_document(tenant, document_id))
        if not old:
            return
        alive = set()
        for start in range(0, len(old), INSERT_BATCH):
            batch = old[start:start + INSERT_BATCH]
            alive.update(row["vid"] for row in self._run(NebulaStatements.mentioned_entities(tenant, batch)))
        orphans = [vid for vid in old if vid not in alive]
        for start in range(0, len(orphans), INSERT_BATCH):
            self._run(NebulaStatements.delete_entities(tenant, orphans[start:start + INSERT_BATCH]))

    def replace_document(self, tenant: str, document_id: str, mentions: Sequence[Mention]) -> None:
        _check_nebula_keys(tenant, document_id)
        _check_mentions(mentions)
        self._remove_document(tenant, document_id)
        entities = list({m.entity_id: m for m in reversed(mentions)}.values())[::-1]  # first mention wins
        chunk_ids = _unique([m.chunk_id for m in mentions])
        pairs = _unique([f"{m.chunk_id}\x00{m.entity_id}" for m in mentions])
        for start in range(0, len(entities), INSERT_BATCH):
            self._run(NebulaStatements.insert_entities(tenant, entities[start:start + INSERT_BATCH]))
        for start in range(0, len(chunk_ids), INSERT_BATCH):
            self._run(NebulaStatements.insert_chunks(tenant, document_id, chunk_ids[start:start + INSERT_BATCH]))
        edge_pairs = [tuple(p.split("\x00", 1)) for p in pairs]
        for start in range(0, len(edge_pairs), INSERT_BATCH):
            self._run(NebulaStatements.insert_mentions(tenant, edge_pairs[start:start + INSERT_BATCH]))  # type: ignore[arg-type]

    def delete_document(self, tenant: str, document_id: str) -> None:
        _check_nebula_keys(tenant, document_id)
        self._remove_document(tenant, document_id)

    def replace_communities(self, tenant: str, communities: Sequence[Community]) -> None:
        _check_nebula_keys(tenant)
        self._run(NebulaStatements.delete_communities(tenant))
        for start in range(0, len(communities), INSERT_BATCH):
            self._run(NebulaStatements.insert_communities(tenant, communities[start:start + INSERT_BATCH]))

    # --- reads ----------------------------------------------------------------------
    @staticmethod
    def _entity(row: dict[str, Any]) -> Entity:
        return Entity(entity_id=row["entity_id"], name=row["name"], kind=row["kind"],
                      mention_count=int(row["mentions"]), document_count=int(row["documents"]))

    def find_entities(self, tenant: str, query: str | None, limit: int) -> list[Entity]:
        _check_nebula_keys(tenant)
        if limit < 1:
            return []
        return [self._entity(row) for row in self._run(NebulaStatements.find_entities(tenant, query, limit))]

    def get_entity(self, tenant: str, entity_id: str) -> Entity | None:
        _check_nebula_keys(tenant)
        rows = self._run(NebulaStatements.get_entity(tenant, entity_id))
        return self._entity(rows[0]) if rows else None

    def neighbors(self, tenant: str, entity_id: str, limit: int) -> list[Neighbor]:
        """Two queries (co-occurrence weights, then the neighbours' counts), ordered here.

        One `MATCH ... WITH ... MATCH` could do both, but a second MATCH from a bound
        vertex is not planned alike by every 3.x release; two plain MATCHes are.
        """
        _check_nebula_keys(tenant)
        if limit < 1:
            return []
        weights = {row["entity_id"]: float(row["weight"])
                   for row in self._run(NebulaStatements.neighbor_weights(tenant, entity_id))}
        ids = list(weights)
        entities: list[Entity] = []
        for start in range(0, len(ids), INSERT_BATCH):
            entities.extend(self._entity(row) for row in
                            self._run(NebulaStatements.entity_stats(tenant, ids[start:start + INSERT_BATCH])))
        entities.sort(key=lambda e: (-weights[e.entity_id], -e.mention_count, e.entity_id))
        return [Neighbor(entity=e, weight=weights[e.entity_id]) for e in entities[:limit]]

    def entities_of_chunks(self, tenant: str, chunk_ids: Sequence[str]) -> dict[str, list[str]]:
        _check_nebula_keys(tenant)
        wanted = _unique(chunk_ids)
        result: dict[str, list[str]] = {chunk_id: [] for chunk_id in wanted}
        for start in range(0, len(wanted), INSERT_BATCH):
            for row in self._run(NebulaStatements.entities_of_chunks(tenant, wanted[start:start + INSERT_BATCH])):
                result.setdefault(row["chunk_id"], []).append(row["entity_id"])
        return result

    def chunks_of_entities(self, tenant: str, entity_ids: Sequence[str], limit: int) -> list[ScoredChunk]:
        _check_nebula_keys(tenant)
        wanted = _unique(entity_ids)
        if not wanted or limit < 1:
            return []
        return [ScoredChunk(chunk_id=row["chunk_id"], document_id=row["document_id"], score=float(row["score"]))
                for row in self._run(NebulaStatements.chunks_of_entities(tenant, wanted, limit))]

    def edges(self, tenant: str) -> list[tuple[str, str, float]]:
        _check_nebula_keys(tenant)
        return [(row["a"], row["b"], float(row["weight"])) for row in self._run(NebulaStatements.edges(tenant))]

    def communities(self, tenant: str) -> list[Community]:
        _check_nebula_keys(tenant)
        rows = sorted(self._run(NebulaStatements.communities(tenant)), key=lambda row: int(row["community_id"]))
        return [Community(community_id=int(row["community_id"]), entity_ids=tuple(json.loads(row["entity_ids"])),
                          summary=row["summary"], size=int(row["size"]), top_entities=tuple(json.loads(row["top"])))
                for row in rows]

    # --- lifecycle ------------------------------------------------------------------
    def ping(self) -> ComponentHealth:
        started = time.perf_counter()
        try:
            self._run('RETURN "ping" AS ok')
        except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises
            return probed("graph", self.backend, self.embedded, started, str(exc))
        return probed("graph", self.backend, self.embedded, started)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            pool, self._pool = self._pool, None
        for session in idle:
            try:
                session.release()
            except Exception:  # noqa: BLE001 - best effort
                logger.debug("releasing a nebula session on close", exc_info=True)
        if pool is not None:
            pool.close()


def create_graph_store(settings: Settings) -> GraphStore:
    """NebulaGraph when NEBULA_ADDRESS is set, else SQLite at `data_dir/graph.db`.

    Settings has no NEBULA_USER/NEBULA_PASSWORD fields yet; they are read from it when
    present. Without them the NebulaGraph defaults (root/nebula) are used outside
    production and refused in production.
    """
    if not settings.nebula_address:
        return SqliteGraphStore(settings.data_dir / "graph.db")
    user = getattr(settings, "nebula_user", None)
    password = getattr(settings, "nebula_password", None)
    if hasattr(password, "get_secret_value"):
        password = password.get_secret_value()
    if not user or not password:
        if settings.environment == "production":
            raise ConfigurationError("NEBULA_ADDRESS is set, so NEBULA_USER and NEBULA_PASSWORD must be set too")
        user, password = user or "root", password or "nebula"
    return NebulaGraphStore(settings.nebula_address, user, password)
