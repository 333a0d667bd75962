"""Chunking: citable spans, paragraphs kept whole, overlap, and the model's token limit."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from stratmaster.knowledge.chunking import (
    DEFAULT_MAX_TOKENS,
    Chunk,
    TokenCounter,
    WordpieceCounter,
    chunk_text,
    paragraph_spans,
    sentence_spans,
)
from stratmaster.knowledge.text import markdown_to_text, normalise_text

CISI = Path(__file__).resolve().parents[3] / "shared" / "data" / "cisi" / "corpus.jsonl"


class WordCounter:
    """One token per whitespace-separated word: makes packing decisions easy to predict."""

    def count(self, text: str) -> int:
        return len(text.split())

    def split(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        words = [m.span() for m in re.finditer(r"\S+", text)]
        return [(words[i][0], words[min(i + max_tokens, len(words)) - 1][1])
                for i in range(0, len(words), max_tokens)]


@pytest.fixture(scope="module")
def wordpiece() -> WordpieceCounter:
    return WordpieceCounter()


def sentence(rng: random.Random, words: int) -> str:
    vocabulary = ["market", "share", "grew", "strongly", "pricing", "pressure", "eased", "customers",
                  "churned", "less", "quarter", "revenue", "margin", "competitor", "launched", "product"]
    body = " ".join(rng.choice(vocabulary) for _ in range(words))
    return body[0].upper() + body[1:] + "."


def document(seed: int, paragraphs: int = 30) -> str:
    rng = random.Random(seed)
    return "\n\n".join(
        " ".join(sentence(rng, rng.randint(3, 25)) for _ in range(rng.randint(1, 12)))
        for _ in range(paragraphs))


def assert_valid(chunks: list[Chunk], text: str, counter: TokenCounter, max_tokens: int) -> None:
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    covered = [False] * len(text)
    for chunk in chunks:
        assert chunk.text == text[chunk.start:chunk.end]
        assert chunk.text.strip() == chunk.text != ""
        assert chunk.token_count == counter.count(chunk.text) <= max_tokens
        covered[chunk.start:chunk.end] = [True] * (chunk.end - chunk.start)
    for previous, current in zip(chunks, chunks[1:], strict=False):
        assert previous.start < current.start and previous.end < current.end  # order, progress
    missed = [char for char, seen in zip(text, covered, strict=True) if not seen and not char.isspace()]
    assert not missed, "every non-space character belongs to some chunk"


# --- the real tokenizer ------------------------------------------------------------------------
def test_counter_ignores_the_tokenizer_files_truncation_and_padding(wordpiece):
    # tokenizer.json ships truncation and padding at 128; counting must not inherit them.
    assert wordpiece.count("one two three") == 3
    assert wordpiece.count("word " * 500) == 500
    assert wordpiece.count("") == 0
    assert isinstance(wordpiece, TokenCounter)


def test_counter_split_covers_the_text_within_the_limit(wordpiece):
    text = "Unbelievably long-winded sentences, with punctuation; keep going " * 40
    spans = wordpiece.split(text, 30)
    assert all(wordpiece.count(text[a:b]) <= 30 for a, b in spans)
    assert "".join(text[a:b] for a, b in spans).replace(" ", "") == text.replace(" ", "")
    assert all(a == 0 or text[a - 1] == " " for a, _ in spans), "cuts fall between words"


def test_counter_split_cuts_inside_a_word_only_when_it_must(wordpiece):
    word = "pneumonoultramicroscopicsilicovolcanoconiosis"  # 15 or so word pieces
    spans = wordpiece.split(word, 4)
    assert len(spans) > 1
    assert "".join(word[a:b] for a, b in spans) == word
    assert all(wordpiece.count(word[a:b]) <= 4 for a, b in spans)


@pytest.mark.parametrize("max_tokens", [16, 64, DEFAULT_MAX_TOKENS])
def test_random_documents_respect_every_invariant(wordpiece, max_tokens):
    for seed in range(3):
        text = document(seed)
        chunks = chunk_text(text, wordpiece, max_tokens=max_tokens, overlap_tokens=max_tokens // 8)
        assert_valid(chunks, text, wordpiece, max_tokens)


@pytest.mark.skipif(not CISI.exists(), reason="needs the shared CISI collection")
def test_real_abstracts_fill_chunks(wordpiece):
    rows = [json.loads(line) for line in CISI.read_text().splitlines()[:200]]
    text = normalise_text("\n\n".join(row["title"] + "\n\n" + row["text"] for row in rows))
    chunks = chunk_text(text, wordpiece)
    assert_valid(chunks, text, wordpiece, DEFAULT_MAX_TOKENS)
    mean = sum(chunk.token_count for chunk in chunks) / len(chunks)
    assert mean > 0.6 * DEFAULT_MAX_TOKENS, "paragraph packing should not leave chunks mostly empty"


def test_default_limit_leaves_room_for_the_models_special_tokens():
    assert DEFAULT_MAX_TOKENS == 256 - 2


def test_unicode_text(wordpiece):
    text = normalise_text(
        "数据驱动的战略决策。市场份额增长了百分之五。\n\n"
        "Émile’s café served crème brûlée 🍮 to 👩‍👩‍👧 families! "
        "مرحبا بالعالم. Ελληνικά κείμενα εδώ? Zalgo z̷̢͓a̵l̸g̶o̴ text.\n\n"
        + "😀 " * 300)
    chunks = chunk_text(text, wordpiece, max_tokens=40, overlap_tokens=8)
    assert_valid(chunks, text, wordpiece, 40)


def test_markdown_output_chunks(wordpiece):
    text = markdown_to_text("# Title\n\n" + "\n".join(f"- item number {i} of the list" for i in range(80))
                            + "\n\n```\n" + "\n".join(f"x{i} = compute({i})" for i in range(60)) + "\n```\n")
    assert_valid(chunk_text(text, wordpiece, max_tokens=64, overlap_tokens=8), text, wordpiece, 64)


def test_deterministic(wordpiece):
    text = document(7)
    assert chunk_text(text, wordpiece) == chunk_text(text, wordpiece)


# --- packing rules (word counter: one token per word) ------------------------------------------
def test_short_text_is_one_chunk():
    chunks = chunk_text("Hello there.\n\nSecond paragraph.", WordCounter(), max_tokens=10, overlap_tokens=2)
    assert chunks == [Chunk(0, "Hello there.\n\nSecond paragraph.", 0, 31, 4)]


def test_empty_text_has_no_chunks():
    assert chunk_text("", WordCounter()) == []
    assert chunk_text(" \n\n ", WordCounter()) == []


def test_paragraphs_that_fit_are_never_split():
    rng = random.Random(3)
    paragraphs = [" ".join(sentence(rng, 4) for _ in range(rng.randint(1, 4))) for _ in range(40)]
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, WordCounter(), max_tokens=30, overlap_tokens=5)
    assert_valid(chunks, text, WordCounter(), 30)
    for start, end in paragraph_spans(text):
        assert any(c.start <= start and end <= c.end for c in chunks), text[start:end]
    # A chunk may begin inside a paragraph (the previous chunk's tail as overlap), but
    # it ends where a paragraph ends.
    for chunk in chunks:
        assert text[chunk.end:chunk.end + 2] in ("\n\n", "")


def test_paragraph_moves_to_next_chunk_rather_than_splitting():
    first = "Alpha beta gamma delta. Epsilon zeta eta."   # 7 words
    second = "One two three four five six seven eight."   # 8 words
    text = first + "\n\n" + second
    # The overlap (3 words) fits beside the paragraph: both are kept.
    assert [c.text for c in chunk_text(text, WordCounter(), max_tokens=11, overlap_tokens=3)] == [
        first, "Epsilon zeta eta.\n\n" + second]
    # It does not: the overlap gives way, the paragraph stays whole.
    assert [c.text for c in chunk_text(text, WordCounter(), max_tokens=10, overlap_tokens=3)] == [
        first, second]


def test_overlap_repeats_whole_trailing_sentences():
    text = " ".join(f"Sentence number {i} here." for i in range(30))  # 4 words each, one paragraph
    chunks = chunk_text(text, WordCounter(), max_tokens=20, overlap_tokens=8)
    assert_valid(chunks, text, WordCounter(), 20)
    starts = {a for a, _ in sentence_spans(text, 0, len(text))}
    for previous, current in zip(chunks, chunks[1:], strict=False):
        shared = text[current.start:previous.end]
        assert current.start < previous.end, "consecutive chunks overlap"
        assert WordCounter().count(shared) == 8  # two whole sentences of four words
        assert current.start in starts


def test_overlap_takes_last_words_when_a_sentence_is_longer_than_the_overlap():
    text = " ".join(f"Sentence {i} has exactly seven words here." for i in range(20))
    chunks = chunk_text(text, WordCounter(), max_tokens=21, overlap_tokens=5)
    assert_valid(chunks, text, WordCounter(), 21)
    for previous, current in zip(chunks, chunks[1:], strict=False):
        shared = text[current.start:previous.end]
        assert 0 < WordCounter().count(shared) <= 5
        assert text[current.start - 1] == " ", "overlap starts at a word"


def test_zero_overlap():
    text = " ".join(f"Sentence number {i} here." for i in range(30))
    chunks = chunk_text(text, WordCounter(), max_tokens=20, overlap_tokens=0)
    assert all(previous.end < current.start for previous, current in zip(chunks, chunks[1:], strict=False))


def test_long_sentence_is_split_at_token_boundaries_with_overlap():
    text = " ".join(f"w{i}" for i in range(1000)) + "."
    chunks = chunk_text(text, WordCounter(), max_tokens=50, overlap_tokens=10)
    assert_valid(chunks, text, WordCounter(), 50)
    assert max(c.token_count for c in chunks) == 50
    for previous, current in zip(chunks, chunks[1:], strict=False):
        assert 0 < WordCounter().count(text[current.start:previous.end]) <= 10


def test_long_sentence_with_the_real_tokenizer(wordpiece):
    text = ", ".join(f"clause {i} with antidisestablishmentarianism" for i in range(300)) + "."
    chunks = chunk_text(text, wordpiece, max_tokens=64, overlap_tokens=8)
    assert_valid(chunks, text, wordpiece, 64)
    assert len(chunks) > 10


def test_sentences_respect_abbreviations_and_lines():
    text = "Dr. Smith met J. Doe, e.g. at the U.S. office. Then left!\nNew line starts here"
    assert [text[a:b] for a, b in sentence_spans(text, 0, len(text))] == [
        "Dr. Smith met J. Doe, e.g. at the U.S. office.", "Then left!", "New line starts here"]


@pytest.mark.parametrize(("max_tokens", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_invalid_sizes(max_tokens, overlap):
    with pytest.raises(ValueError):
        chunk_text("text", WordCounter(), max_tokens=max_tokens, overlap_tokens=overlap)
