"""IR measures: hand-computed cases, parity with ir-measures (pytrec_eval, i.e. trec_eval's
own code) on real runs over CISI and on synthetic ones, and the TREC/BEIR readers' errors.

The parity runs are a BM25 written here, the same BM25 with its scores rounded (many
ties), and seeded random runs with scores from a few values (ties everywhere), some
missing judged queries and answering unjudged ones, against CISI's binary judgments and
against graded judgments derived from them.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import ir_measures
import pytest
from ir_measures import AP, RR, R, nDCG
from ir_measures import P as Prec

from stratmaster.evals.datasets import (
    BeirDataset,
    DatasetFormatError,
    load_beir,
    read_beir_qrels,
    read_corpus,
    read_queries,
)
from stratmaster.evals.ir_metrics import (
    Measure,
    TrecFormatError,
    average_precision,
    evaluate,
    evaluate_rankings,
    ndcg,
    parse_measure,
    parse_qrels,
    parse_run,
    precision,
    read_qrels,
    read_run,
    recall,
    reciprocal_rank,
    trec_ranking,
    write_qrels,
    write_run,
)

# The shared material sits beside the repository (../shared), in CI as here.
CISI = Path(os.environ.get("STRATMASTER_CISI_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "cisi"))
TOLERANCE = 1e-6

# Ours -> ir-measures, all answered by its pytrec_eval provider (trec_eval's C code).
PARITY = {
    "nDCG@10": nDCG @ 10, "nDCG@100": nDCG @ 100, "nDCG": nDCG,
    "MAP@100": AP @ 100, "MAP@10": AP @ 10, "MAP": AP,
    "Recall@100": R @ 100, "Recall@10": R @ 10,
    "P@5": Prec @ 5, "P@10": Prec @ 10,
    "MRR": RR,
}


# --- hand-computed cases ---------------------------------------------------------------------
def test_ndcg_uses_graded_gains_log2_discount_and_ideal_from_judgments():
    judgments = {"a": 3, "b": 2, "c": 0, "d": 1, "e": 2}
    dcg = 0 / math.log2(2) + 3 / math.log2(3) + 1 / math.log2(4)
    ideal = 3 / math.log2(2) + 2 / math.log2(3) + 2 / math.log2(4)  # e is judged but never retrieved
    assert ndcg(judgments, ["c", "a", "d", "b"], 3) == pytest.approx(dcg / ideal)
    assert ndcg(judgments, ["a", "b", "e", "d"], None) == pytest.approx(1.0)
    assert ndcg({"a": 0}, ["a"], 10) == 0.0  # nothing relevant: 0, not a division by zero


def test_negative_grades_give_no_gain_and_are_not_relevant():
    judgments = {"bad": -1, "good": 2}
    assert ndcg(judgments, ["bad", "good"], 2) == pytest.approx((2 / math.log2(3)) / 2)
    assert reciprocal_rank(judgments, ["bad", "good"]) == 0.5


def test_average_precision_divides_by_all_relevant_not_by_the_cutoff():
    judgments = {"a": 1, "b": 1, "c": 1, "d": 1}
    assert average_precision(judgments, ["a", "x", "b", "c"], 3) == pytest.approx((1 + 2 / 3) / 4)
    assert average_precision(judgments, ["a", "x", "b", "c"]) == pytest.approx((1 + 2 / 3 + 3 / 4) / 4)
    assert average_precision({"a": 0}, ["a"], 10) == 0.0


def test_recall_precision_and_reciprocal_rank_at_cutoffs():
    judgments = {"a": 1, "b": 2, "z": 1}
    ranking = [f"x{i}" for i in range(10)] + ["a", "b"]
    assert recall(judgments, ranking, 10) == 0.0
    assert recall(judgments, ranking, 12) == pytest.approx(2 / 3)
    assert precision(judgments, ["a"], 10) == pytest.approx(0.1)  # the denominator is k, not what came back
    assert precision(judgments, ranking, None) == pytest.approx(2 / 12)
    assert reciprocal_rank(judgments, ranking, 10) == 0.0
    assert reciprocal_rank(judgments, ranking, None) == pytest.approx(1 / 11)
    assert precision(judgments, [], None) == 0.0


def test_relevance_level_sets_what_counts_as_relevant():
    judgments = {"a": 1, "b": 2}
    assert recall(judgments, ["a", "b"], 1, relevance_level=2) == 0.0
    assert reciprocal_rank(judgments, ["a", "b"], relevance_level=2) == 0.5


def test_ties_are_broken_by_doc_id_descending_like_trec_eval():
    assert trec_ranking({"a": 1.0, "c": 1.0, "b": 1.0, "z": 0.5, "d": 2.0}) == ["d", "c", "b", "a", "z"]
    assert trec_ranking({"10": 1.0, "9": 1.0, "100": 1.0}) == ["9", "100", "10"]  # strings, not numbers


def test_evaluate_means_over_judged_queries():
    qrels = {"1": {"a": 1}, "2": {"b": 1}, "3": {"c": 0}}
    run = {"1": {"a": 2.0, "x": 1.0}, "3": {"c": 1.0}, "99": {"a": 1.0}}
    result = evaluate(qrels, run, ["MRR@10", "Recall@100"])
    assert result["queries"] == 3  # 2 is missing from the run: 0; 3 has nothing relevant: 0; 99 unjudged
    assert result["aggregate"]["MRR@10"] == pytest.approx(1 / 3)
    assert result["per_query"] == {"1": {"MRR@10": 1.0, "Recall@100": 1.0}, "2": {"MRR@10": 0.0, "Recall@100": 0.0},
                                   "3": {"MRR@10": 0.0, "Recall@100": 0.0}}
    assert result["missing_queries"] == ["2"] and result["unjudged_queries_ignored"] == 1
    skipped = evaluate(qrels, run, ["MRR@10"], missing_as_zero=False)
    assert skipped["queries"] == 2 and skipped["aggregate"]["MRR@10"] == pytest.approx(1 / 2)


def test_evaluate_defaults_and_errors():
    result = evaluate({"1": {"a": 1}}, {"1": {"a": 1.0}})
    assert result["measures"] == ["nDCG@10", "MAP@100", "Recall@100", "MRR@10"]
    assert all(value == 1.0 for value in result["aggregate"].values())
    with pytest.raises(ValueError, match="no query to evaluate"):
        evaluate({}, {"1": {"a": 1.0}})
    with pytest.raises(ValueError, match="NaN"):
        evaluate({"1": {"a": 1}}, {"1": {"a": float("nan")}})
    with pytest.raises(ValueError, match="more than once"):
        evaluate_rankings({"1": {"a": 1}}, {"1": ["a", "a"]})
    with pytest.raises(ValueError, match="twice"):
        evaluate({"1": {"a": 1}}, {"1": {"a": 1.0}}, ["MAP@10", "AP@10"])


def test_evaluate_rankings_keeps_the_given_order():
    qrels = {"1": {"a": 1}}
    assert evaluate_rankings(qrels, {"1": ["b", "a"]}, ["MRR"])["aggregate"]["MRR"] == 0.5
    assert evaluate(qrels, {"1": {"b": 1.0, "a": 1.0}}, ["MRR"])["aggregate"]["MRR"] == 0.5  # b > a on the tie


@pytest.mark.parametrize(("text", "expected"), [
    ("nDCG@10", Measure("nDCG", 10)), ("ndcg_cut@5", None), ("map@100", Measure("MAP", 100)),
    ("AP@100", Measure("MAP", 100)), ("R@1000", Measure("Recall", 1000)), ("Precision@5", Measure("P", 5)),
    ("RR", Measure("MRR", None)), ("MRR @ 10", Measure("MRR", 10)), ("nDCG@0", None), ("F1@10", None),
])
def test_parse_measure(text, expected):
    if expected is None:
        with pytest.raises(ValueError):
            parse_measure(text)
    else:
        assert parse_measure(text) == expected
        assert str(parse_measure(text)) == expected.label


# --- TREC files ------------------------------------------------------------------------------
def test_trec_files_round_trip(tmp_path):
    qrels = {"2": {"d1": 1, "d2": 0}, "10": {"d3": 2}}
    run = {"10": {"d3": 0.1 + 0.2, "d1": 1e-17, "d9": -3.5}, "2": {"d1": 1.0, "d2": 1.0}}
    write_qrels(tmp_path / "q.txt", qrels)
    write_run(tmp_path / "r.txt", run, tag="bm25")
    assert read_qrels(tmp_path / "q.txt") == qrels
    assert read_run(tmp_path / "r.txt") == run  # scores exactly, through repr
    lines = (tmp_path / "r.txt").read_text().splitlines()
    assert lines[:2] == ["2 Q0 d2 1 1.0 bm25", "2 Q0 d1 2 1.0 bm25"]  # natural query order, trec_eval ties
    # ir-measures reads what we write the same way.
    theirs = {(r.query_id, r.doc_id): r.score for r in ir_measures.read_trec_run(str(tmp_path / "r.txt"))}
    assert theirs == {(q, d): s for q, docs in run.items() for d, s in docs.items()}
    with pytest.raises(ValueError, match="whitespace"):
        write_run(tmp_path / "bad.txt", {"1": {"a b": 1.0}})
    assert not (tmp_path / "bad.txt").exists() and not (tmp_path / "bad.txt.tmp").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("1 0 a 1\n\n1 0 b\n", r"<qrels>, line 3: expected 4 fields"),
    ("1 0 a one\n", r"<qrels>, line 1: relevance must be an integer, got 'one'"),
    ("1 0 a 1\n1 0 a 0\n", r"<qrels>, line 2: .*twice \(first on line 1\)"),
])
def test_qrels_errors_name_the_line(text, message):
    with pytest.raises(TrecFormatError, match=message) as caught:
        parse_qrels(text.splitlines(keepends=True))
    assert caught.value.line == int(re.search(r"line (\d+)", message).group(1))


@pytest.mark.parametrize(("text", "message"), [
    ("1 Q0 a 1 2.0 t\n1 Q0 b 2 1.0\n", r"<run>, line 2: expected 6 fields"),
    ("1 Q0 a first 2.0 t\n", r"line 1: rank must be an integer"),
    ("1 Q0 a 1 high t\n", r"line 1: score must be a number, got 'high'"),
    ("1 Q0 a 1 nan t\n", r"line 1: score is NaN"),
    ("1 Q0 a 1 2.0 t\n1 Q0 a 2 1.0 t\n", r"line 2: .*twice \(first on line 1\)"),
])
def test_run_errors_name_the_line(text, message):
    with pytest.raises(TrecFormatError, match=message):
        parse_run(text.splitlines(keepends=True))


def test_read_run_names_the_file(tmp_path):
    path = tmp_path / "run.txt"
    path.write_text("1 Q0 a 1 2.0 t\n1 Q0 b\n")
    with pytest.raises(TrecFormatError, match=re.escape(f"{path}, line 2")):
        read_run(path)


# --- BEIR loader -----------------------------------------------------------------------------
def beir_folder(tmp_path: Path, corpus: str | None = None, queries: str | None = None,
                qrels: str | None = None) -> Path:
    (tmp_path / "qrels").mkdir(exist_ok=True)
    (tmp_path / "corpus.jsonl").write_text(corpus if corpus is not None else
                                          '{"_id": "d1", "title": "T", "text": "one"}\n{"_id": 2, "text": "two"}\n')
    (tmp_path / "queries.jsonl").write_text(queries if queries is not None else
                                           '{"_id": "q1", "text": "what", "metadata": {"k": 1}}\n')
    (tmp_path / "qrels" / "test.tsv").write_text(qrels if qrels is not None else
                                                "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\t2\t0\n")
    return tmp_path


def test_load_beir_returns_typed_records(tmp_path):
    data = load_beir(beir_folder(tmp_path))
    assert isinstance(data, BeirDataset) and data.split == "test"
    assert data.corpus["2"].title == "" and data.corpus["2"].text == "two"  # integer id kept as a string
    assert data.queries["q1"].metadata == {"k": 1}
    assert data.qrels == {"q1": {"d1": 1, "2": 0}}
    assert [q.id for q in data.judged_queries()] == ["q1"]


@pytest.mark.parametrize(("corpus", "message"), [
    ('{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "b"\n', r"corpus.jsonl, line 2: invalid JSON"),
    ('\n{"title": "t", "text": "a"}\n', r"corpus.jsonl, line 2: field '_id': missing"),
    ('{"_id": "d1", "text": 5}\n', r"line 1: field 'text': must be a string, got int"),
    ('{"_id": "d1"}\n', r"line 1: field 'text': missing"),
    ('{"_id": ["d1"], "text": "a"}\n', r"line 1: field '_id': must be a string or an integer"),
    ('{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n',
     r"line 2: field '_id': document id 'd1' repeats line 1"),
    ('["d1", "a"]\n', r"line 1: expected a JSON object, got list"),
    ('{"_id": "d1", "text": "a", "metadata": 3}\n', r"line 1: field 'metadata': must be an object"),
])
def test_corpus_errors_name_file_line_and_field(tmp_path, corpus, message):
    folder = beir_folder(tmp_path, corpus=corpus)
    with pytest.raises(DatasetFormatError, match=message):
        read_corpus(folder / "corpus.jsonl")


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "queries.jsonl"
    path.write_bytes(b'{"_id": "q1", "text": "ok"}\n{"_id": "q2", "text": "\xff"}\n')
    with pytest.raises(DatasetFormatError, match=r"queries.jsonl, line 2: not valid UTF-8") as caught:
        read_queries(path)
    assert caught.value.line == 2 and caught.value.path == str(path)


def test_query_text_must_not_be_empty(tmp_path):
    folder = beir_folder(tmp_path, queries='{"_id": "q1", "text": "  "}\n')
    with pytest.raises(DatasetFormatError, match=r"line 1: field 'text': must not be empty"):
        read_queries(folder / "queries.jsonl")


@pytest.mark.parametrize(("qrels", "message"), [
    ("q1\td1\t1\n", r"test.tsv, line 1: expected the header 'query-id\\tcorpus-id\\tscore'"),
    ("query-id\tcorpus-id\tscore\nq1\td1\n", r"line 2: expected 3 tab-separated fields"),
    ("query-id\tcorpus-id\tscore\nq1\td1\tyes\n", r"line 2: field 'score': must be an integer, got 'yes'"),
    ("query-id\tcorpus-id\tscore\nq1\t\t1\n", r"line 2: field 'corpus-id': must not be empty"),
    ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t0\n", r"line 3: .*again \(first on line 2\)"),
    ("", r"test.tsv: empty"),
])
def test_qrels_tsv_errors(tmp_path, qrels, message):
    folder = beir_folder(tmp_path, qrels=qrels)
    with pytest.raises(DatasetFormatError, match=message):
        read_beir_qrels(folder / "qrels" / "test.tsv")


def test_strict_loading_names_unknown_ids(tmp_path):
    folder = beir_folder(tmp_path, qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tnope\t1\n")
    with pytest.raises(DatasetFormatError, match=r"line 3: field 'corpus-id': 'nope' is not in corpus.jsonl"):
        load_beir(folder)
    assert load_beir(folder, strict=False).qrels["q1"]["nope"] == 1
    folder = beir_folder(tmp_path, qrels="query-id\tcorpus-id\tscore\nq9\td1\t1\n")
    with pytest.raises(DatasetFormatError, match=r"line 2: field 'query-id': 'q9' is not in queries.jsonl"):
        load_beir(folder)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"corpus.jsonl: missing"):
        load_beir(tmp_path)


# --- parity with ir-measures ---------------------------------------------------------------
_STOP = frozenset("a an and are as at be by for from how in is it of on or that the this to was what which with "
                  "are there can be do does".split())


def tokens(text: str) -> list[str]:
    return [t for t in re.findall(r"[a-z0-9]+", text.lower()) if t not in _STOP]


def bm25_run(corpus: dict[str, str], queries: dict[str, str], depth: int = 100,
             k1: float = 0.9, b: float = 0.4) -> dict[str, dict[str, float]]:
    """Okapi BM25 (Lucene's idf) over a postings list: the top `depth` documents per query."""
    postings: dict[str, list[tuple[str, int]]] = defaultdict(list)
    lengths = {}
    for doc_id, text in corpus.items():
        counts = Counter(tokens(text))
        lengths[doc_id] = sum(counts.values())
        for term, tf in counts.items():
            postings[term].append((doc_id, tf))
    average = sum(lengths.values()) / len(lengths)
    run = {}
    for query_id, text in queries.items():
        scores: dict[str, float] = defaultdict(float)
        for term in set(tokens(text)):
            docs = postings.get(term, [])
            idf = math.log(1 + (len(corpus) - len(docs) + 0.5) / (len(docs) + 0.5))
            for doc_id, tf in docs:
                scores[doc_id] += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths[doc_id] / average))
        top = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:depth]
        run[query_id] = dict(top)
    return run


def random_run(qrels, doc_ids: list[str], seed: int, depth: int = 150) -> dict[str, dict[str, float]]:
    """Scores from six values (ties everywhere), judged documents over-sampled; every fifth
    judged query left out, and one unjudged query answered."""
    rng = random.Random(seed)
    run = {}
    for position, query_id in enumerate(sorted(qrels)):
        if position % 5 == 4:
            continue
        judged = list(qrels[query_id])
        picked = set(rng.sample(judged, min(len(judged), depth // 3))) | set(rng.sample(doc_ids, depth))
        run[query_id] = {doc: float(rng.randint(0, 5)) for doc in sorted(picked)[:depth]}
    run["unjudged-query"] = {doc: rng.random() for doc in rng.sample(doc_ids, 20)}
    return run


def graded(qrels) -> dict[str, dict[str, int]]:
    """Graded judgments from binary ones: grades 1..3 for the relevant, some 0 and -1."""
    rng = random.Random(11)
    out = {}
    for query_id, judged in qrels.items():
        out[query_id] = {doc: rng.choice([-1, 0, 1, 2, 3, 3]) for doc in judged}
    out["all-zero"] = {"1": 0, "2": 0}  # a judged query with nothing relevant
    return out


@pytest.fixture(scope="module")
def cisi() -> BeirDataset:
    if not (CISI / "corpus.jsonl").is_file():
        pytest.skip(f"CISI not found at {CISI} (set STRATMASTER_CISI_DIR)")
    return load_beir(CISI)


@pytest.fixture(scope="module")
def cisi_runs(cisi) -> dict[str, dict[str, dict[str, float]]]:
    corpus = {d.id: f"{d.title} {d.text}" for d in cisi.corpus.values()}
    queries = {q.id: q.text for q in cisi.judged_queries()}
    bm25 = bm25_run(corpus, queries)
    return {
        "bm25": bm25,
        "bm25-rounded": {q: {d: float(round(s)) for d, s in docs.items()} for q, docs in bm25.items()},
        "random-ties": random_run(cisi.qrels, sorted(cisi.corpus), seed=3),
        "random-ties-2": random_run(cisi.qrels, sorted(cisi.corpus), seed=4),
    }


def assert_parity(qrels, run, ties_expected: bool | None = None) -> None:
    if ties_expected is not None:
        has_ties = any(len(set(docs.values())) < len(docs) for docs in run.values())
        assert has_ties == ties_expected
    ours = evaluate(qrels, run, [*PARITY, "MRR@10"])
    reference, measures = ir_measures.pytrec_eval, list(PARITY.values())
    theirs = {f"{m.measure}|{m.query_id}": m.value for m in reference.iter_calc(measures, qrels, run)}
    aggregate = reference.calc_aggregate(measures, qrels, run)
    assert set(ours["per_query"]) == {key.split("|", 1)[1] for key in theirs}
    for query_id, values in ours["per_query"].items():
        for label, measure in PARITY.items():
            assert values[label] == pytest.approx(theirs[f"{measure}|{query_id}"], abs=TOLERANCE), (label, query_id)
        # pytrec_eval has no RR cutoff (ir-measures' RR@k provider, msmarco, breaks ties by doc id
        # ascending): RR@10 is trec_eval's RR when the first relevant document is within rank 10.
        rr = theirs[f"RR|{query_id}"]
        assert values["MRR@10"] == pytest.approx(rr if rr >= 0.1 - 1e-12 else 0.0, abs=TOLERANCE), query_id
    for label, measure in PARITY.items():
        assert ours["aggregate"][label] == pytest.approx(aggregate[measure], abs=TOLERANCE), label


@pytest.mark.parametrize("name", ["bm25", "bm25-rounded", "random-ties", "random-ties-2"])
@pytest.mark.parametrize("grades", ["binary", "graded"])
def test_parity_with_ir_measures_on_cisi(cisi, cisi_runs, name, grades):
    qrels = cisi.qrels if grades == "binary" else graded(cisi.qrels)
    assert_parity(qrels, cisi_runs[name], ties_expected=None if name == "bm25" else True)


def test_bm25_on_cisi_is_a_real_run(cisi, cisi_runs):
    # Guards the parity tests against a degenerate run: this BM25 reaches 0.27 nDCG@10 on CISI.
    result = evaluate(cisi.qrels, cisi_runs["bm25"], ["nDCG@10", "Recall@100"])
    assert 0.2 < result["aggregate"]["nDCG@10"] < 0.5
    assert result["queries"] == len(cisi.judged_queries()) == 76


def test_missing_as_zero_false_matches_plain_pytrec_eval(cisi, cisi_runs):
    import pytrec_eval

    run = cisi_runs["random-ties"]
    ours = evaluate(cisi.qrels, run, ["nDCG@10", "MAP@100"], missing_as_zero=False)
    theirs = pytrec_eval.RelevanceEvaluator(cisi.qrels, {"ndcg_cut_10", "map_cut_100"}).evaluate(run)
    assert set(ours["per_query"]) == set(theirs)
    for query_id, values in theirs.items():
        assert ours["per_query"][query_id]["nDCG@10"] == pytest.approx(values["ndcg_cut_10"], abs=TOLERANCE)
        assert ours["per_query"][query_id]["MAP@100"] == pytest.approx(values["map_cut_100"], abs=TOLERANCE)


def test_rr_at_k_matches_ir_measures_where_there_are_no_ties(cisi, cisi_runs):
    run = {q: {d: 1.0 / rank for rank, d in enumerate(trec_ranking(docs), start=1)}
           for q, docs in cisi_runs["random-ties"].items()}
    ours = evaluate(cisi.qrels, run, ["MRR@10"])["aggregate"]["MRR@10"]
    assert ours == pytest.approx(ir_measures.calc_aggregate([RR @ 10], cisi.qrels, run)[RR @ 10], abs=TOLERANCE)


@pytest.mark.parametrize("seed", range(6))
def test_parity_on_synthetic_collections(seed):
    """Independent of CISI: small random collections with graded judgments and heavy ties."""
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(rng.randint(5, 60))]
    qrels = {f"q{q}": {d: rng.choice([-1, 0, 0, 1, 2, 4]) for d in rng.sample(docs, rng.randint(1, len(docs)))}
             for q in range(rng.randint(1, 12))}
    run = {q: {d: float(rng.randint(0, 3)) for d in rng.sample(docs, rng.randint(1, len(docs)))}
           for q in qrels if rng.random() < 0.85}
    run[f"extra{seed}"] = {docs[0]: 1.0}
    assert_parity(qrels, run)


def test_trec_files_agree_with_ir_measures_on_cisi(cisi, cisi_runs, tmp_path):
    write_qrels(tmp_path / "qrels.txt", cisi.qrels)
    write_run(tmp_path / "run.txt", cisi_runs["bm25-rounded"])
    measures = [nDCG @ 10, AP @ 100]
    theirs = ir_measures.pytrec_eval.calc_aggregate(
        measures, ir_measures.read_trec_qrels(str(tmp_path / "qrels.txt")),
        ir_measures.read_trec_run(str(tmp_path / "run.txt")))
    ours = evaluate(read_qrels(tmp_path / "qrels.txt"), read_run(tmp_path / "run.txt"), ["nDCG@10", "MAP@100"])
    assert ours["aggregate"]["nDCG@10"] == pytest.approx(theirs[nDCG @ 10], abs=TOLERANCE)
    assert ours["aggregate"]["MAP@100"] == pytest.approx(theirs[AP @ 100], abs=TOLERANCE)
    assert json.loads(json.dumps(ours))["queries"] == 76  # the result is plain JSON
