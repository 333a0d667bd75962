"""The BM25 analyzer: Lucene's English stopwords, Snowball stems, one recipe for index and query."""

from __future__ import annotations

import time

import pytest
import Stemmer

from stratmaster.knowledge.analysis import ENGLISH_STOP_WORDS, analyze, analyze_many

# Lucene EnglishAnalyzer.ENGLISH_STOP_WORDS_SET, as published in its source.
LUCENE_STOP_WORDS = (
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with"
).split()


def test_stopwords_are_lucenes_33():
    assert ENGLISH_STOP_WORDS == frozenset(LUCENE_STOP_WORDS)
    assert len(ENGLISH_STOP_WORDS) == 33


def test_lowercases_drops_stopwords_and_stems():
    assert analyze("The Running of the Bulls is NOT into libraries") == ["run", "bull", "librari"]


def test_stems_are_snowball_english():
    words = ["classification", "classifications", "retrieval", "retrieving", "indexing", "generously"]
    assert analyze(" ".join(words)) == Stemmer.Stemmer("english").stemWords(words)


@pytest.mark.parametrize(("text", "expected"), [
    ("The company's results", ["compani", "result"]),          # possessive dropped
    ("the companies\u2019 results", ["compani", "result"]),    # curly apostrophe, plural possessive
    ("don't stop", ["dont", "stop"]),                           # contraction stays one word
    ("O'Neill wrote", ["oneil", "wrote"]),
    ("it's", []),                                               # "it" + possessive -> stopword
    ("'quoted' words", ["quot", "word"]),                      # quotes are not part of words
])
def test_apostrophes(text, expected):
    assert analyze(text) == expected


def test_splits_on_non_alphanumerics_and_keeps_digits():
    assert analyze("snake_case, e-mail; COVID-19 in 2024 (v2.5)") == [
        "snake", "case", "mail", "covid", "19", "2024", "v2"]


def test_single_characters_are_dropped():
    assert analyze("I saw a b c 7 x") == ["saw"]


def test_unicode_words():
    # No accent folding, as in Lucene's EnglishAnalyzer.
    assert analyze("Café crème déjà-vu naïve") == ["café", "crème", "déjà", "vu", "naïv"]


def test_empty_and_stopword_only_text():
    assert analyze("") == []
    assert analyze("the and of, to!") == []


def test_repeats_are_kept_for_term_frequency():
    assert analyze("library libraries library") == ["librari", "librari", "librari"]


def test_analyze_many_matches_analyze():
    texts = ["The company's results", "", "running runners", "the"]
    assert analyze_many(texts) == [analyze(text) for text in texts]


def test_fast_enough_to_index_on_the_request_path():
    text = "Information retrieval systems rank the documents of a collection by relevance. " * 2000
    started = time.perf_counter()
    tokens = analyze(text)
    elapsed = time.perf_counter() - started
    assert len(tokens) == 14000
    assert elapsed < 1.0  # about 0.02 s here; generous for a loaded CI machine
