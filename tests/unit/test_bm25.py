"""The in-memory BM25 scorer behind the embedded keyword index: what its bookkeeping must keep true."""

from __future__ import annotations

import random

import pytest

from stratmaster.stores.bm25 import Bm25Scorer


def ranking(scorer: Bm25Scorer, terms: list[str], k: int = 50, documents: list[str] | None = None) -> list[str]:
    return [hit.chunk_id for hit in scorer.search(terms, k, documents)]


def test_ties_at_the_cut_are_broken_by_chunk_id():
    scorer = Bm25Scorer()
    for chunk in ("c3", "c1", "c2", "c4"):
        scorer.add(chunk, "d", ["same", "words"])
    scorer.add("c0", "d", ["other"])
    assert ranking(scorer, ["same"], k=2) == ["c1", "c2"]


def test_a_replaced_chunk_is_scored_by_its_new_terms_only():
    scorer = Bm25Scorer()
    scorer.add("c1", "d1", ["old"])
    scorer.add("c2", "d2", ["filler"])
    scorer.add("c1", "d1", ["new"])
    assert ranking(scorer, ["old"]) == []
    assert ranking(scorer, ["new"]) == ["c1"]
    assert len(scorer) == 2


def test_removing_a_document_removes_its_chunks_and_their_statistics():
    scorer = Bm25Scorer()
    scorer.add("a1", "a", ["shared", "a"])
    scorer.add("a2", "a", ["shared"])
    scorer.add("b1", "b", ["shared", "b"])
    before = scorer.search(["b"], 5)[0].score
    assert scorer.remove_document("a") == 2
    assert ranking(scorer, ["shared"]) == ["b1"]
    assert scorer.search(["b"], 5)[0].score != before  # N and avgdl changed with the removal
    assert scorer.remove_document("a") == 0


def test_document_filter_keeps_only_those_documents():
    scorer = Bm25Scorer()
    for i in range(6):
        scorer.add(f"c{i}", f"d{i % 3}", ["term"] * (i + 1))
    assert set(ranking(scorer, ["term"], documents=["d1"])) == {"c1", "c4"}
    assert ranking(scorer, ["term"], documents=["missing"]) == []


@pytest.mark.parametrize("seed", [1, 2])
def test_after_many_removals_and_compaction_scores_equal_a_fresh_build(seed):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(40)]
    churned, fresh = Bm25Scorer(), Bm25Scorer()
    live: dict[str, tuple[str, list[str]]] = {}
    adds = 0
    for _ in range(4000):  # enough replacements and removals to compact more than once
        chunk = f"c{rng.randrange(300)}"
        if chunk in live and rng.random() < 0.4:
            churned.remove(chunk)
            del live[chunk]
        else:
            terms = rng.choices(words, k=rng.randrange(1, 12))
            document = f"d{rng.randrange(50)}"
            churned.add(chunk, document, terms)
            adds += 1
            live[chunk] = (document, terms)
    assert len(churned._chunk) < adds - 1024  # slots were reclaimed: compaction ran
    for chunk, (document, terms) in sorted(live.items()):
        fresh.add(chunk, document, terms)
    for query in (["w1"], ["w2", "w3", "w3"], words[:10]):
        got, want = churned.search(query, 25), fresh.search(query, 25)
        assert [h.chunk_id for h in got] == [h.chunk_id for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], rel=1e-12)
