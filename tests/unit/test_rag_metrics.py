"""RAG metrics without a judge: what counts as support, and each measure on hand-computed cases.

The support rule (stratmaster/evals/rag_metrics.py): a sentence is supported by one chunk
when >= 60% of its content terms occur in it, every number it writes is written there,
and it agrees in polarity with the chunk's closest sentence.
"""

from __future__ import annotations

import numpy as np
import pytest

from stratmaster.evals.rag_metrics import (
    SUPPORT_THRESHOLD,
    answer_relevancy,
    citation_scores,
    content_terms,
    context_precision,
    context_recall,
    faithfulness,
    is_negated,
    numbers,
    split_sentences,
    support,
    supporting_chunks,
)

CHURN = "Monthly churn did not rise after the March 2024 price increase; it stayed at 1.8% through June."
SHARE = "Kestrel Semi supplies 68% of our controller chips; its nearest alternative, Orin Micro, supplies 21%."
GROWTH = "Germany's mid-market HR software segment grew 14% in 2024, the fastest of any EU market."


# --- the pieces of the rule -------------------------------------------------------------------
def test_content_terms_are_stemmed_and_leave_out_function_words_negations_and_numbers():
    # "should", "its", "because" are function words; "not" a negation; "14%" and "2024" numbers.
    assert content_terms("Acme should not expand because its segment grew 14% in 2024.") == \
        {"acm", "expand", "segment", "grew"}
    assert content_terms("Germany's markets") == content_terms("germany market")  # possessive, plural, case


def test_numbers_are_compared_by_value_as_written():
    assert numbers("Revenue of $1,200,000 rose 4.50% (from 12.0) in Q3 FY2024") == \
        {"1200000", "4.5", "12", "3", "2024"}
    assert numbers("18%") == numbers("18 percent") == {"18"}
    assert numbers("three quarters") == frozenset()  # number words are ordinary terms


@pytest.mark.parametrize("text, negated", [
    ("Churn did not rise.", True), ("Churn didn't rise.", True), ("Churn didn\u2019t rise.", True),
    ("No customer left.", True), ("Churn never rose.", True), ("We cannot tell.", True),
    ("Churn rose.", False), ("Notable growth in Norway.", False),
])
def test_negation_cues(text, negated):
    assert is_negated(text) is negated


def test_sentences_are_split_like_the_chunker_keeps_abbreviations_whole():
    assert split_sentences("Dr. Smith agrees, e.g. on price. Churn fell! Next?") == \
        ["Dr. Smith agrees, e.g. on price.", "Churn fell!", "Next?"]


# --- support ----------------------------------------------------------------------------------
def test_a_restated_sentence_is_supported_with_its_coverage():
    # Terms: acm, prioritis, germani, mid, market, segment, grew; the chunk lacks acm and prioritis: 5/7.
    result = support("Acme should prioritise Germany because its mid-market segment grew 14% in 2024.",
                     {"growth": GROWTH})
    assert (result.chunk_id, result.supported, result.missing_numbers, result.negation_mismatch) == \
        ("growth", True, (), False)
    assert result.score == pytest.approx(5 / 7)


def test_a_changed_number_is_not_supported_however_many_words_match():
    result = support("Kestrel Semi supplies 62% of our controller chips.", {"share": SHARE})
    assert result.score == 1.0  # every content term is in the chunk
    assert (result.supported, result.missing_numbers) == (False, ("62",))
    assert support("Kestrel Semi supplies 68% of our controller chips.", {"share": SHARE}).supported


def test_an_added_not_is_not_supported():
    result = support("Germany's mid-market HR software segment did not grow faster than any EU market in 2024.",
                     {"growth": GROWTH})
    assert (result.supported, result.negation_mismatch) == (False, True)


def test_a_dropped_not_is_not_supported_either():
    result = support("Monthly churn rose after the March 2024 price increase.", {"churn": CHURN})
    assert result.score == pytest.approx(6 / 7)  # "rose" is the one term the chunk lacks
    assert (result.supported, result.negation_mismatch) == (False, True)
    assert support("Monthly churn did not rise after the March 2024 price increase.", {"churn": CHURN}).supported


def test_polarity_is_taken_from_the_closest_sentence_of_the_chunk():
    chunk = "Prices did not change in Spain. Churn rose after the price change in France."
    assert support("Churn rose after the price change in France.", {"c": chunk}).supported
    assert not support("Prices changed in Spain.", {"c": chunk}).supported


def test_coverage_at_the_threshold_supports_and_below_it_does_not():
    chunk = {"c": "Acme sells payroll software in Austria."}
    # acm, sell, payrol, softwar, austria, onlin: 5 of 6 in the chunk; with "profit" 5 of 7 < 0.75.
    assert support("Acme sells payroll software online in Austria.", chunk, threshold=5 / 6).supported
    assert not support("Acme sells payroll software online in Austria at a profit.", chunk, threshold=0.75).supported


def test_a_sentence_with_nothing_checkable_is_not_supported():
    result = support("Yes, it should.", {"c": GROWTH})
    assert (result.score, result.supported) == (0.0, False)


def test_the_best_chunk_supports_the_sentence_even_when_another_covers_more_of_it():
    chunks = {"wrong-year": "Churn at Acme fell to 4% in 2023 across Europe.", "right": "Churn fell to 4% in 2024."}
    result = support("Churn at Acme fell to 4% in 2024.", chunks)
    assert (result.chunk_id, result.supported) == ("right", True)
    assert result.score == pytest.approx(2 / 3)  # churn, fell of churn, acm, fell


def test_numbers_must_all_be_in_one_chunk():
    chunks = {"de": "The German segment grew 14% in 2024.", "fr": "The French segment grew 6% in 2024."}
    result = support("The German segment grew 14% in 2024 and the French one 6%.", chunks)
    assert not result.supported  # the claim needs both chunks: lexical support never combines them
    assert result.missing_numbers in (("6",), ("14",))


def test_unsupported_sentence_reports_its_closest_chunk_and_why():
    result = support("Kestrel Semi supplies 62% of our controller chips.",
                     {"outage": "A 2021 fab outage at Kestrel Semi halted our line.", "share": SHARE})
    assert (result.chunk_id, result.missing_numbers) == ("share", ("62",))


def test_without_chunks_nothing_is_supported():
    assert support("Churn fell.", {}).chunk_id is None


# --- measures ---------------------------------------------------------------------------------
def test_faithfulness_is_the_share_of_supported_sentences_with_detail():
    result = faithfulness(["Kestrel Semi supplies 68% of our controller chips.",  # supported
                           "Kestrel Semi supplies 62% of our controller chips.",  # number changed
                           "Orin Micro supplies 21%."],  # supported
                          {"share": SHARE})
    assert result.score == pytest.approx(2 / 3)
    assert [s.supported for s in result.sentences] == [True, False, True]
    assert result.sentences[1].as_dict()["missing_numbers"] == ["62"]
    assert faithfulness([], {"share": SHARE}).score == 0.0


def test_context_precision_averages_precision_at_each_relevant_rank():
    assert context_precision(["a", "x", "b", "c"], {"a", "b", "c"}) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert context_precision(["x", "a"], {"a", "b"}) == pytest.approx(1 / 2)  # unretrieved b is recall's concern
    assert context_precision(["a", "b", "x"], {"a", "b"}) == 1.0
    assert context_precision(["x", "y"], {"a"}) == 0.0


def test_context_recall_counts_relevant_contexts_retrieved():
    assert context_recall(["a", "x", "b"], ["a", "b", "c", "d"]) == 0.5
    assert context_recall(["a"], []) is None


def test_citation_precision_and_recall_against_the_chunks_that_support_each_sentence():
    contexts = {"share": SHARE, "churn": CHURN, "growth": GROWTH}
    sentences = ["Kestrel Semi supplies 68% of our controller chips.",  # supported by share
                 "Monthly churn did not rise after the March 2024 price increase.",  # supported by churn
                 "Germany's mid-market HR software segment grew 14% in 2024.",  # supported by growth
                 "Acme will dominate Europe."]  # supported by nothing
    citations = [["share", "churn"],  # one right, one wrong
                 ["growth"],  # wrong
                 [],  # supported, uncited
                 ["share"]]  # wrong
    scores = citation_scores(sentences, citations, contexts)
    assert scores.precision == pytest.approx(1 / 4)  # 1 right of 4 citations
    assert scores.recall == pytest.approx(1 / 3)  # of 3 supportable sentences, 1 cites a supporting chunk
    assert scores.supporting == (("share",), ("churn",), ("growth",), ())
    assert supporting_chunks(sentences[0], contexts) == ["share"]


def test_citation_scores_are_undefined_without_citations_or_support():
    scores = citation_scores(["Acme will dominate Europe."], [[]], {"share": SHARE})
    assert (scores.precision, scores.recall) == (None, None)
    with pytest.raises(ValueError, match="2 sentences but 1"):
        citation_scores(["a.", "b."], [[]], {})


def test_answer_relevancy_is_the_cosine_of_the_embeddings():
    vectors = {"q": [3.0, 4.0, 0.0], "a": [4.0, 3.0, 0.0], "zero": [0.0, 0.0, 0.0]}

    def embed(texts):
        return np.array([vectors[t] for t in texts])

    assert answer_relevancy("q", "a", embed) == pytest.approx(24 / 25)  # (12 + 12) / (5 * 5), rescaled
    assert answer_relevancy("q", "q", embed) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="zero vector"):
        answer_relevancy("q", "zero", embed)


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    from stratmaster.knowledge.onnx_embedding import OnnxEmbedder

    return OnnxEmbedder(tmp_path_factory.mktemp("models"))


def test_answer_relevancy_with_the_real_model_prefers_an_answer_to_the_question(embedder):
    question = "Did the March 2024 price increase hurt customer retention?"
    on_topic = "Churn did not rise after the price increase and net revenue retention grew to 109%."
    off_topic = "The German works council must approve HR software that monitors employees."
    relevant = answer_relevancy(question, on_topic, embedder.embed)
    irrelevant = answer_relevancy(question, off_topic, embedder.embed)
    assert 0.4 < relevant <= 1.0
    assert irrelevant < relevant - 0.2


def test_the_default_threshold_is_documented():
    assert SUPPORT_THRESHOLD == 0.6
