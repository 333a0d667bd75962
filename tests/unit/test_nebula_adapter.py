"""NebulaGraphStore against a fake nebula3 session: the nGQL it sends and how it reads answers.

No NebulaGraph server runs here, so these tests pin what can be checked without one:
every data statement names the tenant (as a filter, or as the value written), string
values are escaped so no input can end a literal, VIDs fit the space's FIXED_STRING, and
rows come back as the protocol's records.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from stratmaster.stores.graph import (
    VID_LENGTH,
    NebulaGraphStore,
    NebulaStatements,
    chunk_vid,
    entity_vid,
    ngql_string,
    parse_addresses,
)
from stratmaster.stores.protocols import Community, Entity, GraphStore, Mention, ScoredChunk, StoreError

ACME = "acme"
EVIL = 'ev"il\\ten\nant'  # a quote, a backslash and a newline


class FakeResult:
    def __init__(self, rows: list[dict[str, Any]] | None = None, error: str | None = None) -> None:
        self._rows = rows or []
        self._error = error

    def is_succeeded(self) -> bool:
        return self._error is None

    def error_msg(self) -> str:
        return self._error or ""

    def as_primitive(self) -> list[dict[str, Any]]:
        return list(self._rows)


class FakeSession:
    """Records statements; `answer(statement)` gives the rows (or raises, like a broken connection)."""

    def __init__(self, log: list[str], answer: Callable[[str], Any]) -> None:
        self.log = log
        self.answer = answer
        self.released = False

    def execute(self, stmt: str) -> FakeResult:
        assert not self.released, "statement on a released session"
        self.log.append(stmt)
        answer = self.answer(stmt)
        return answer if isinstance(answer, FakeResult) else FakeResult(answer)

    def release(self) -> None:
        self.released = True


class Fake:
    def __init__(self, answer: Callable[[str], Any] = lambda stmt: []) -> None:
        self.log: list[str] = []
        self.sessions: list[FakeSession] = []
        self.answer = answer

    def factory(self) -> FakeSession:
        session = FakeSession(self.log, lambda stmt: self.answer(stmt))
        self.sessions.append(session)
        return session

    def store(self) -> NebulaGraphStore:
        return NebulaGraphStore("graphd:9669", "user", "secret", session_factory=self.factory)

    @property
    def data_statements(self) -> list[str]:
        return [s for s in self.log if not s.startswith("USE ")]


# --- a small nGQL lexer for the tests: literals out, the rest is code ---------------------
_LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"')


def code_outside_literals(statement: str) -> str:
    """The statement with every well-formed string literal replaced by "?"; fails on a stray quote."""
    code = _LITERAL.sub("?", statement)
    assert '"' not in code, f"unbalanced string literal in {statement!r}"
    assert "\n" not in code, f"raw newline in {statement!r}"
    return code


def literals(statement: str) -> list[str]:
    def unescape(literal: str) -> str:
        body = literal[1:-1]
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(m.group(1),
                                                                                              m.group(1)), body)
    return [unescape(m.group()) for m in _LITERAL.finditer(statement)]


def names_tenant(statement: str, tenant: str) -> bool:
    """The statement filters on the tenant, or writes it as a value."""
    lit = re.escape(ngql_string(tenant))
    return bool(re.search(rf"\.tenant == {lit}", statement) or re.search(rf"\({lit}[,)]", statement))


def exercise(store: GraphStore, tenant: str) -> None:
    store.replace_document(tenant, "d1", [Mention("c1", "alpha", "Alpha", "proper"),
                                          Mention("c1", "beta", "Beta", "concept")])
    store.delete_document(tenant, "d1")
    store.find_entities(tenant, None, 10)
    store.find_entities(tenant, "Al", 10)
    store.get_entity(tenant, "alpha")
    store.neighbors(tenant, "alpha", 5)
    store.entities_of_chunks(tenant, ["c1", "c2"])
    store.chunks_of_entities(tenant, ["alpha", "beta"], 5)
    store.edges(tenant)
    store.replace_communities(tenant, [Community(0, ("alpha", "beta"), "A summary.", 2, ("alpha",))])
    store.communities(tenant)


def old_entities_exist(stmt: str) -> list[dict[str, Any]]:
    """Answers as if d1 had one chunk mentioning an entity that is now an orphan."""
    if stmt.startswith("LOOKUP ON chunk") and "GO FROM" in stmt:
        return [{"vid": entity_vid(ACME, "old")}]
    return []


# --- statements -------------------------------------------------------------------------
def test_is_a_graph_store() -> None:
    store = Fake().store()
    assert isinstance(store, GraphStore)
    assert (store.backend, store.embedded) == ("nebulagraph", False)


@pytest.mark.parametrize("tenant", [ACME, EVIL])
def test_every_statement_is_scoped_to_the_tenant(tenant: str) -> None:
    fake = Fake(lambda stmt: [{"vid": entity_vid(tenant, "old")}] if "GO FROM" in stmt else [])
    exercise(fake.store(), tenant)
    assert len(fake.data_statements) >= 15
    for statement in fake.data_statements:
        assert names_tenant(statement, tenant), statement
        code_outside_literals(statement)


def test_statements_never_name_another_tenant() -> None:
    fake = Fake(old_entities_exist)
    exercise(fake.store(), ACME)
    for statement in fake.data_statements:
        tenants = set(re.findall(r'tenant == ("(?:[^"\\]|\\.)*")', statement))
        assert tenants <= {ngql_string(ACME)}, statement


def test_replace_document_sequence() -> None:
    fake = Fake(old_entities_exist)
    fake.store().replace_document(ACME, "d1", [
        Mention("c1", "alpha", "Alpha", "proper"), Mention("c1", "beta", "Beta", "concept"),
        Mention("c2", "alpha", "ALPHA", "proper"), Mention("c2", "alpha", "ALPHA", "proper"),
    ])
    kinds = [re.sub(r"\s.*", "", s) + (" | " + s.split("| ")[-1].split(" ")[0] if "|" in s else "")
             for s in fake.data_statements]
    assert kinds == ["LOOKUP | GO", "LOOKUP | DELETE", "MATCH", "FETCH | DELETE", "INSERT", "INSERT", "INSERT"]
    lookup, delete_chunks, alive, orphans, entities, chunks, edges = fake.data_statements
    assert 'chunk.document_id == "d1"' in lookup and "DELETE VERTEX $-.vid WITH EDGE" in delete_chunks
    assert entity_vid(ACME, "old") in alive and entity_vid(ACME, "old") in orphans
    assert entities.startswith("INSERT VERTEX IF NOT EXISTS entity(tenant, entity_id, name, kind) VALUES")
    assert literals(entities).count("alpha") == 1 and "Alpha" in literals(entities)  # first mention wins
    assert chunks.startswith("INSERT VERTEX chunk(") and literals(chunks).count("d1") == 2
    assert edges.startswith("INSERT EDGE mentions(tenant) VALUES")
    # c1-alpha, c1-beta and c2-alpha (given twice) once each
    assert len(re.findall(r'"c_[0-9a-f]+"->"e_[0-9a-f]+":\("acme"\)', edges)) == 3


def test_entities_still_mentioned_are_kept() -> None:
    def answer(stmt: str) -> list[dict[str, Any]]:
        if "GO FROM" in stmt:
            return [{"vid": entity_vid(ACME, "kept")}, {"vid": entity_vid(ACME, "gone")}]
        if stmt.startswith("MATCH") and "RETURN DISTINCT id(e)" in stmt:
            return [{"vid": entity_vid(ACME, "kept")}]
        return []

    fake = Fake(answer)
    fake.store().delete_document(ACME, "d1")
    delete = [s for s in fake.data_statements if s.startswith("FETCH")]
    assert len(delete) == 1
    assert entity_vid(ACME, "gone") in delete[0] and entity_vid(ACME, "kept") not in delete[0]


def test_no_orphan_check_when_the_document_had_nothing() -> None:
    fake = Fake()
    fake.store().delete_document(ACME, "d1")
    assert [s.split(" ")[0] for s in fake.data_statements] == ["LOOKUP", "LOOKUP"]


def test_empty_inputs_send_nothing() -> None:
    fake = Fake()
    store = fake.store()
    assert store.entities_of_chunks(ACME, []) == {}
    assert store.chunks_of_entities(ACME, [], 5) == []
    assert store.find_entities(ACME, None, 0) == []
    assert store.neighbors(ACME, "alpha", 0) == []
    assert fake.log == []


# --- escaping ---------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "literal"), [
    ("plain", '"plain"'),
    ('say "hi"', r'"say \"hi\""'),
    ("back\\slash", r'"back\\slash"'),
    ("line\nbreak\ttab\r", r'"line\nbreak\ttab\r"'),
    ("it's", '"it\'s"'),
    ("nul\x00bell\x07", '"nul bell "'),
    ("Ünïcødé ✓", '"Ünïcødé ✓"'),
    ('\\"', r'"\\\""'),
])
def test_ngql_string(value: str, literal: str) -> None:
    assert ngql_string(value) == literal


INJECTIONS = [
    '") ; DROP SPACE stratmaster; ("',
    '\\") ; DROP SPACE stratmaster; //',
    'x" OR 1 == 1 OR "',
    "a\\",
    "\n| DELETE VERTEX \"x\"",
]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_hostile_values_stay_inside_literals(evil: str) -> None:
    fake = Fake()
    store = fake.store()
    store.replace_document(evil, evil, [Mention(evil, evil, evil, evil)])
    store.find_entities(evil, evil, 5)
    store.neighbors(evil, evil, 5)
    store.entities_of_chunks(evil, [evil])
    store.replace_communities(evil, [Community(0, (evil,), evil, 1, (evil,))])
    for statement in fake.data_statements:
        code = code_outside_literals(statement)
        assert "DROP" not in code and "OR 1" not in code and code.count("DELETE") <= 1, statement
    insert = next(s for s in fake.data_statements if s.startswith("INSERT VERTEX IF NOT EXISTS entity"))
    assert literals(insert)[1:] == [evil, evil, evil, evil]  # tenant, entity_id, name, kind round-trip


def test_substring_query_is_lower_cased_and_escaped() -> None:
    statement = NebulaStatements.find_entities(ACME, 'Bank "of" America', 5)
    assert r'lower(e.entity.name) CONTAINS "bank \"of\" america"' in statement
    assert statement.endswith("LIMIT 5")


def test_space_name_must_be_an_identifier() -> None:
    with pytest.raises(ValueError):
        NebulaGraphStore("graphd:9669", "u", "p", space="x`; DROP SPACE y")


# --- vids -------------------------------------------------------------------------------
def test_vids_fit_the_space_and_separate_tenants() -> None:
    for vid in (entity_vid(ACME, "x" * 500), chunk_vid(EVIL, "c"), entity_vid("", "")):
        assert len(vid) <= VID_LENGTH and re.fullmatch(r"[ecm]_[0-9a-f]{32}", vid)
    assert entity_vid(ACME, "alpha") != entity_vid("globex", "alpha")
    assert entity_vid("a", "b\x1fc") != entity_vid("a\x1fb", "c")
    assert chunk_vid(ACME, "alpha") != entity_vid(ACME, "alpha")


# --- reading answers --------------------------------------------------------------------
def row(entity_id: str, mentions: int, documents: int, **extra: Any) -> dict[str, Any]:
    return {"entity_id": entity_id, "name": entity_id.title(), "kind": "proper", "mentions": mentions,
            "documents": documents, **extra}


def test_find_and_get_entity_read_rows() -> None:
    fake = Fake(lambda stmt: [row("alpha", 3, 2), row("beta", 1, 1)])
    store = fake.store()
    assert store.find_entities(ACME, None, 5) == [Entity("alpha", "Alpha", "proper", 3, 2),
                                                 Entity("beta", "Beta", "proper", 1, 1)]
    assert store.get_entity(ACME, "alpha") == Entity("alpha", "Alpha", "proper", 3, 2)
    assert Fake().store().get_entity(ACME, "alpha") is None


def test_neighbors_order_by_weight_then_mentions() -> None:
    def answer(stmt: str) -> list[dict[str, Any]]:
        if "AS weight" in stmt:
            return [{"entity_id": "delta", "weight": 1}, {"entity_id": "beta", "weight": 2},
                    {"entity_id": "gamma", "weight": 1}]
        return [row("delta", 1, 1), row("beta", 3, 2), row("gamma", 2, 2)]

    neighbors = Fake(answer).store().neighbors(ACME, "alpha", 2)
    assert [(n.entity.entity_id, n.weight) for n in neighbors] == [("beta", 2.0), ("gamma", 1.0)]


def test_chunk_reads() -> None:
    def answer(stmt: str) -> list[dict[str, Any]]:
        if "AS score" in stmt:
            return [{"chunk_id": "c1", "document_id": "d1", "score": 2}]
        if "AS chunk_id, e.entity.entity_id" in stmt:
            return [{"chunk_id": "c1", "entity_id": "alpha"}, {"chunk_id": "c1", "entity_id": "beta"}]
        if "AS weight" in stmt:
            return [{"a": "alpha", "b": "beta", "weight": 2}]
        return []

    store = Fake(answer).store()
    assert store.chunks_of_entities(ACME, ["alpha", "alpha", "beta"], 5) == [ScoredChunk("c1", "d1", 2.0)]
    assert store.entities_of_chunks(ACME, ["c1", "c9"]) == {"c1": ["alpha", "beta"], "c9": []}
    assert store.edges(ACME) == [("alpha", "beta", 2.0)]


def test_communities_round_trip_through_rows() -> None:
    communities = [Community(1, ("c", "d"), 'He said "no".', 2, ("c",)), Community(0, ("a", "b"), "", 2, ())]
    fake = Fake()
    store = fake.store()
    store.replace_communities(ACME, communities)
    delete, insert = fake.data_statements
    assert delete.startswith("LOOKUP ON community WHERE community.tenant == \"acme\"") and "DELETE VERTEX" in delete
    values = literals(insert)
    assert values.count("acme") == 2 and '["c", "d"]' in values and 'He said "no".' in values

    rows = [{"community_id": 1, "entity_ids": '["c", "d"]', "summary": 'He said "no".', "size": 2, "top": '["c"]'},
            {"community_id": 0, "entity_ids": '["a", "b"]', "summary": "", "size": 2, "top": "[]"}]
    assert Fake(lambda stmt: rows).store().communities(ACME) == sorted(communities, key=lambda c: c.community_id)


# --- sessions and errors ----------------------------------------------------------------
def test_sessions_use_the_space_once_and_are_reused() -> None:
    fake = Fake()
    store = fake.store()
    store.edges(ACME)
    store.edges(ACME)
    assert len(fake.sessions) == 1
    assert fake.log[0] == "USE `stratmaster`" and fake.log.count("USE `stratmaster`") == 1


def test_a_rejected_statement_is_a_store_error_and_keeps_the_session() -> None:
    fake = Fake(lambda stmt: FakeResult(error="SemanticError: boom") if stmt.startswith("MATCH") else [])
    store = fake.store()
    with pytest.raises(StoreError, match="SemanticError: boom"):
        store.edges(ACME)
    store.communities(ACME)
    assert len(fake.sessions) == 1 and not fake.sessions[0].released


def test_a_broken_session_is_released_and_replaced() -> None:
    calls = {"n": 0}

    def answer(stmt: str) -> list[dict[str, Any]]:
        if stmt.startswith("MATCH"):
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError("connection reset")
        return []

    fake = Fake(answer)
    store = fake.store()
    with pytest.raises(StoreError, match="connection reset"):
        store.edges(ACME)
    assert fake.sessions[0].released
    assert store.edges(ACME) == []
    assert len(fake.sessions) == 2


def test_use_failure_is_a_store_error() -> None:
    fake = Fake(lambda stmt: FakeResult(error="SpaceNotFound") if stmt.startswith("USE") else [])
    with pytest.raises(StoreError, match="SpaceNotFound"):
        fake.store().edges(ACME)
    assert fake.sessions[0].released


def test_ping_and_close() -> None:
    fake = Fake()
    store = fake.store()
    assert store.ping().healthy
    store.close()
    assert all(s.released for s in fake.sessions)
    with pytest.raises(StoreError):
        store.edges(ACME)
    assert not store.ping().healthy
    broken = Fake(lambda stmt: FakeResult(error="down"))
    health = broken.store().ping()
    assert not health.healthy and health.backend == "nebulagraph"


def test_unreachable_server_is_a_store_error_not_a_crash() -> None:
    store = NebulaGraphStore("127.0.0.1:1", "root", "nebula", timeout_ms=500)
    try:
        with pytest.raises(StoreError):
            store.edges(ACME)
        assert not store.ping().healthy
    finally:
        store.close()


def test_create_schema_statements() -> None:
    fake = Fake()
    fake.store().create_schema(partitions=5)
    assert fake.log[0] == ("CREATE SPACE IF NOT EXISTS `stratmaster` (partition_num = 5, replica_factor = 1, "
                           f"vid_type = FIXED_STRING({VID_LENGTH}))")
    assert "CREATE EDGE IF NOT EXISTS mentions(tenant string NOT NULL)" in fake.log
    assert sum(s.startswith("CREATE TAG INDEX") for s in fake.log) == 3
    assert fake.sessions[0].released


def test_parse_addresses() -> None:
    assert parse_addresses("a:9669, b:9670") == [("a", 9669), ("b", 9670)]
    assert parse_addresses([("a", 1)]) == [("a", 1)]
    with pytest.raises(ValueError):
        parse_addresses("nohost")


def test_keys_longer_than_the_index_prefix_are_refused() -> None:
    store = Fake().store()
    with pytest.raises(ValueError):
        store.find_entities("t" * 65, None, 5)
    with pytest.raises(ValueError):
        store.replace_document(ACME, "d" * 129, [])
    store.find_entities("t" * 64, None, 5)


def test_create_schema_waits_for_the_heartbeat() -> None:
    failures = {"USE": 2}

    def answer(stmt: str) -> Any:
        if stmt.startswith("USE") and failures["USE"]:
            failures["USE"] -= 1
            return FakeResult(error="SpaceNotFound")
        return []

    fake = Fake(answer)
    fake.store().create_schema(retry_interval_s=0.01)
    assert fake.log.count("USE `stratmaster`") == 3
    always = Fake(lambda stmt: FakeResult(error="TagNotFound") if "INDEX" in stmt else [])
    with pytest.raises(StoreError, match="TagNotFound"):
        always.store().create_schema(wait_s=0.05, retry_interval_s=0.01)
    assert always.sessions[0].released
