"""RAG eval cases: the JSONL format, its errors, and scores of the example cases in
tests/data/rag_cases.jsonl worked out by hand (each case's "metadata.note" says what is wrong with it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stratmaster.evals.datasets import DatasetFormatError
from stratmaster.evals.rag_cases import AnswerSentence, parse_cited_answer, read_rag_cases, score_case, score_cases

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "rag_cases.jsonl"


@pytest.fixture(scope="module")
def cases():
    return {case.id: case for case in read_rag_cases(EXAMPLES)}


# --- the format -------------------------------------------------------------------------------
def test_markers_cite_the_sentence_they_are_in_or_follow():
    assert parse_cited_answer("Churn fell [a]. Prices rose. [b, c] Acme should buy [c][a]; soon.") == [
        AnswerSentence("Churn fell.", ("a",)),
        AnswerSentence("Prices rose.", ("b", "c")),
        AnswerSentence("Acme should buy; soon.", ("c", "a")),
    ]


def test_a_sentence_without_a_marker_cites_nothing_and_repeats_are_dropped():
    assert parse_cited_answer("Churn fell. Prices rose [b; b].") == [
        AnswerSentence("Churn fell.", ()), AnswerSentence("Prices rose.", ("b",))]


def test_an_empty_marker_is_an_error():
    with pytest.raises(ValueError, match=r"'\[a, \]' has an empty id"):
        parse_cited_answer("Churn fell [a, ].")


def test_the_examples_load_in_both_answer_forms(cases):
    assert list(cases) == ["market-entry-de-fr", "pricing-churn", "supplier-dual-sourcing", "analytics-build-vs-buy"]
    string_form = cases["analytics-build-vs-buy"]
    assert [s.citations for s in string_form.sentences] == [("vendor-quote",), (), ("vendor-quote", "build-estimate")]
    assert string_form.relevant is None
    list_form = cases["supplier-dual-sourcing"]
    assert list_form.sentences[1] == AnswerSentence(
        "A fab outage at Kestrel Semi halted our assembly line for 23 days in 2021.", ("lead-times",))
    assert list_form.relevant == ("supplier-share", "outage-2021", "lead-times", "dual-source-cost")
    assert "[" not in cases["pricing-churn"].answer


VALID = {"id": "ok", "question": "Q?", "contexts": [{"id": "c1", "text": "Churn fell."}], "answer": "Churn fell [c1]."}


def _bad(**changes):
    record = {**VALID, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...})


@pytest.mark.parametrize("line, field, message", [
    ("{not json", None, "invalid JSON"),
    ("[1, 2]", None, "expected a JSON object"),
    (_bad(question=...), "question", "missing"),
    (_bad(question=["Q?"]), "question", "must be a string, got list"),
    (_bad(question=" "), "question", "must not be empty"),
    (_bad(id=True), "id", "must be a string or an integer"),
    (_bad(relevent=["c1"]), "relevent", "unknown field"),
    (_bad(contexts={"c1": "x"}), "contexts", "must be a list"),
    (_bad(contexts=[]), "contexts", "at least one context"),
    (_bad(contexts=[{"id": "c1", "text": "a"}, {"id": "c1", "text": "b"}]), "contexts[1].id", "repeats contexts[0]"),
    (_bad(contexts=[{"id": "c1"}]), "contexts[0].text", "missing"),
    (_bad(contexts=[{"text": "a"}]), "contexts[0].id", "missing"),
    (_bad(contexts=[{"id": "c1", "text": "a", "score": 1}]), "contexts[0].score", "unknown field"),
    (_bad(answer=...), "answer", "missing"),
    (_bad(answer="Churn fell [c9]."), "answer", "cites 'c9', which is not a context id"),
    (_bad(answer="Churn fell [c1,]."), "answer", "empty id"),
    (_bad(answer="[c1]"), "answer", "no sentence"),
    (_bad(answer=42), "answer", "must be a string or a list"),
    (_bad(answer=[{"text": "Churn fell [c1].", "citations": []}]), "answer[0].text", "contains a [marker]"),
    (_bad(answer=[{"text": "Churn fell.", "citations": "c1"}]), "answer[0].citations", "must be a list"),
    (_bad(answer=[{"text": "Churn fell.", "cites": ["c1"]}]), "answer[0].cites", "unknown field"),
    (_bad(relevant=[]), "relevant", "omit the field"),
    (_bad(relevant=["c1", 2.5]), "relevant[1]", "must be a string or an integer"),
    (_bad(metadata=[1]), "metadata", "must be an object"),
])
def test_malformed_cases_name_file_line_and_field(tmp_path, line, field, message):
    path = tmp_path / "cases.jsonl"
    path.write_text(json.dumps({**VALID, "id": "first"}) + "\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError) as caught:
        read_rag_cases(path)
    error = caught.value
    assert (error.path, error.line, error.field) == (str(path), 3, field)
    assert message in str(error) and str(path) in str(error) and "line 3" in str(error)


def test_a_repeated_case_id_names_the_first_line(tmp_path):
    path = tmp_path / "cases.jsonl"
    path.write_text(json.dumps(VALID) + "\n" + json.dumps(VALID) + "\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="line 2: field 'id': case id 'ok' repeats line 1"):
        read_rag_cases(path)


def test_a_file_without_cases_is_an_error(tmp_path):
    path = tmp_path / "cases.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="no cases"):
        read_rag_cases(path)


# --- scores of the examples, by hand ----------------------------------------------------------
def test_a_correct_answer_scores_one_except_for_an_irrelevant_context_ranked_second(cases):
    scores = score_case(cases["market-entry-de-fr"])
    # Relevant contexts at ranks 1, 3, 4 (us-pricing at 2 is not): (1/1 + 2/3 + 3/4) / 3.
    assert scores["context_precision"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert (scores["faithfulness"], scores["context_recall"], scores["citation_precision"],
            scores["citation_recall"]) == (1.0, 1.0, 1.0, 1.0)


def test_a_dropped_not_and_an_unsupported_inference(cases):
    scores = score_case(cases["pricing-churn"])
    rose, retention, inference = scores["sentences"]
    assert (rose["supported"], rose["negation_mismatch"], rose["supported_by"]) == (False, True, [])
    assert retention["supported"] and retention["supported_by"] == ["nrr"]
    assert not inference["supported"]
    assert scores["faithfulness"] == pytest.approx(1 / 3)
    assert scores["citation_precision"] == pytest.approx(1 / 3)  # only the nrr citation of sentence 2 is right
    assert scores["citation_recall"] == 1.0  # the one supportable sentence cites its support
    assert (scores["context_precision"], scores["context_recall"]) == (1.0, 1.0)


def test_a_changed_number_a_wrong_citation_and_an_unretrieved_relevant_chunk(cases):
    scores = score_case(cases["supplier-dual-sourcing"])
    changed, miscited, right = scores["sentences"]
    assert (changed["supported"], changed["missing_numbers"], changed["score"]) == (False, ["62"], 1.0)
    # The outage sentence is true, but only outage-2021 says so, and the answer cites lead-times.
    assert (miscited["supported"], miscited["supported_by"], miscited["citations"]) == \
        (False, ["outage-2021"], ["lead-times"])
    assert right["supported"]
    assert scores["faithfulness"] == pytest.approx(1 / 3)
    assert scores["citation_precision"] == pytest.approx(1 / 3)
    assert scores["citation_recall"] == pytest.approx(1 / 2)  # of 2 supportable sentences, 1 cites its support
    assert scores["context_precision"] == pytest.approx((1 + 2 / 2 + 3 / 4) / 3)  # fx-hedging at rank 3
    assert scores["context_recall"] == pytest.approx(3 / 4)  # dual-source-cost was not retrieved


def test_an_uncited_supported_sentence_is_faithful_but_lowers_citation_recall(cases):
    scores = score_case(cases["analytics-build-vs-buy"])
    assert [s["supported"] for s in scores["sentences"]] == [True, True, False]
    assert scores["faithfulness"] == pytest.approx(2 / 3)  # the build estimate is cited by sentence 3
    assert scores["citation_precision"] == pytest.approx(1 / 3)  # "Acme should buy." is in neither chunk
    assert scores["citation_recall"] == pytest.approx(1 / 2)
    assert (scores["context_precision"], scores["context_recall"]) == (None, None)  # unjudged


def test_means_are_over_the_cases_where_a_measure_is_defined(cases):
    report = score_cases(cases.values())
    assert (report["kind"], report["cases"]) == ("rag_eval", 4)
    assert report["mean"] == pytest.approx({
        "faithfulness": (1 + 1 / 3 + 1 / 3 + 2 / 3) / 4,
        "context_precision": ((1 + 2 / 3 + 3 / 4) / 3 + 1 + (1 + 1 + 3 / 4) / 3) / 3,
        "context_recall": (1 + 1 + 3 / 4) / 3,
        "citation_precision": (1 + 1 / 3 + 1 / 3 + 1 / 3) / 4,
        "citation_recall": (1 + 1 + 1 / 2 + 1 / 2) / 4,
    } | {"answer_relevancy": None})
    assert report["scored_cases"] == {"faithfulness": 4, "context_precision": 3, "context_recall": 3,
                                      "citation_precision": 4, "citation_recall": 4, "answer_relevancy": 0}


def test_answer_relevancy_uses_the_given_embedding(cases):
    def embed(texts):
        return np.array([[1.0, 0.0] if text.endswith("?") else [1.0, 1.0] for text in texts])

    assert score_case(cases["pricing-churn"], embed)["answer_relevancy"] == pytest.approx(2 ** -0.5)


def test_a_stricter_threshold_supports_fewer_sentences(cases):
    # The market-entry sentences cover 9/11, 7/8 and 9/13 of their terms.
    assert score_case(cases["market-entry-de-fr"], threshold=0.8)["faithfulness"] == pytest.approx(2 / 3)
