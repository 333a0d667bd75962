"""Context compression: budgets, span maps, relevance, duplicates, prune and truncate.

Budgets are counted with the embedding model's real WordPiece tokenizer (tokenizer.json
only; the ONNX model is never loaded). `embed` is a deterministic hashed bag of words.
"""

from __future__ import annotations

import hashlib
import random
import re

import numpy as np
import pytest

from stratmaster.compression import BudgetTooSmall, Chunk, Tuning, compress, prune_sentence
from stratmaster.knowledge.analysis import analyze
from stratmaster.knowledge.chunking import WordpieceCounter, sentence_spans


@pytest.fixture(scope="module")
def counter() -> WordpieceCounter:
    return WordpieceCounter()


def fake_embed(texts):
    """Hashed bag of analyzed terms in 64 dimensions: same words, same vector."""
    out = np.zeros((len(texts), 64))
    for row, text in enumerate(texts):
        for term in analyze(text):
            out[row, int(hashlib.sha1(term.encode()).hexdigest(), 16) % 64] += 1.0
    return out


CHUNKS = [
    Chunk("c1", "The company sells software to hospitals. Its revenue grew 12% in 2023. "
                "The office is in Berlin. Employees like the cafeteria."),
    Chunk("c2", "Competitors include Acme and Globex. Acme cut prices by 8% last year.\n"
                "The weather in spring was mild. Dr. Smith did not approve the merger."),
    Chunk("c3", "Hospitals buy software slowly, after long procurement cycles. "
                "Procurement in hospitals never takes less than 9 months. Parking is free on Sundays."),
]

WORDS = ("market share revenue growth pricing hospital software customer churn margin cost supplier "
         "regulation risk demand the a of and to in is was not never 2021 42% Berlin Acme").split()


def random_chunks(rng: random.Random) -> list[Chunk]:
    chunks = []
    for index in range(rng.randint(1, 6)):
        sentences = []
        for _ in range(rng.randint(1, 7)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(1, 18))]
            sentences.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", ". ", ".\n"]))
        chunks.append(Chunk(f"r{index}", " ".join(sentences)))
    return chunks


def check_spans(result, chunks):
    by_id = {chunk.id: chunk.text for chunk in chunks}
    positions: dict[str, int] = {}
    for kept in result.sentences:
        assert by_id[kept.chunk_id][kept.start:kept.end] == kept.original
        assert kept.start >= positions.get(kept.chunk_id, 0), "sentences out of original order"
        positions[kept.chunk_id] = kept.end


@pytest.mark.parametrize("mode", ["extractive", "prune", "truncate"])
@pytest.mark.parametrize("with_embed", [False, True])
def test_budget_is_never_exceeded(counter, mode, with_embed):
    rng = random.Random(20261127)
    checked = 0
    for _ in range(120):
        chunks = random_chunks(rng)
        query = rng.choice([None, "revenue growth of hospital software", "pricing risk"])
        before = sum(counter.count(chunk.text) for chunk in chunks)
        budget = rng.randint(0, before + 5)
        try:
            result = compress(query, chunks, target_tokens=budget, mode=mode, counter=counter,
                              embed=fake_embed if with_embed else None)
        except BudgetTooSmall as error:
            assert error.budget == budget < error.smallest
            continue
        checked += 1
        returned = sum(counter.count(chunk.text) for chunk in result.chunks)
        assert returned == result.tokens_after <= budget
        assert [chunk.tokens for chunk in result.chunks] == [counter.count(chunk.text) for chunk in result.chunks]
        assert result.tokens_before == before
        assert result.ratio == pytest.approx(result.tokens_after / before)
        check_spans(result, chunks)
    assert checked > 60  # most random budgets are feasible: the loop really tested something


def test_ratio_sets_the_budget(counter):
    before = sum(counter.count(chunk.text) for chunk in CHUNKS)
    result = compress("hospital software", CHUNKS, ratio=0.25, counter=counter)
    assert result.budget == -(-before // 4)
    assert result.tokens_after <= result.budget
    assert 0 < result.ratio <= 0.25 + 1 / before


def test_kept_sentences_are_in_order_and_spans_slice_back(counter):
    result = compress("hospital software procurement", CHUNKS, target_tokens=40, counter=counter)
    check_spans(result, CHUNKS)
    for chunk, compressed in zip(CHUNKS, result.chunks, strict=True):
        kept = [s.original for s in result.sentences if s.chunk_id == chunk.id]
        assert compressed.text == " ".join(kept)
        spans = [chunk.text[a:b] for a, b in sentence_spans(chunk.text, 0, len(chunk.text))]
        assert kept == [s for s in spans if s in kept]  # a subsequence of the chunk's sentences
    kept_spans = {(s.chunk_id, s.start, s.end) for s in result.sentences}
    dropped_spans = {(d.chunk_id, d.start, d.end) for d in result.dropped}
    assert not kept_spans & dropped_spans
    total = sum(len(sentence_spans(c.text, 0, len(c.text))) for c in CHUNKS)
    assert len(kept_spans) + len(dropped_spans) == total


@pytest.mark.parametrize("with_embed", [False, True])
def test_query_keeps_the_sentence_about_it(counter, with_embed):
    target = "Acme cut prices by 8% last year."
    budget = counter.count(target) + 2
    result = compress("Did Acme cut its prices?", CHUNKS, target_tokens=budget, counter=counter,
                      embed=fake_embed if with_embed else None)
    assert [s.original for s in result.sentences] == [target]
    assert result.chunks[1].text == target
    assert result.chunks[0].text == result.chunks[2].text == ""


def test_query_changes_the_choice(counter):
    about_berlin = compress("where is the office", CHUNKS, target_tokens=10, counter=counter)
    about_weather = compress("spring weather", CHUNKS, target_tokens=10, counter=counter)
    assert [s.original for s in about_berlin.sentences] == ["The office is in Berlin."]
    assert [s.original for s in about_weather.sentences] == ["The weather in spring was mild."]


def test_near_duplicates_are_not_both_kept(counter):
    chunks = [
        Chunk("a", "Revenue grew 12% in 2023 thanks to hospital sales. The canteen serves lunch at noon."),
        Chunk("b", "In 2023, revenue grew 12%, thanks to sales to hospitals! "
                   "Churn fell to 3% among hospital customers."),
    ]
    first = "Revenue grew 12% in 2023 thanks to hospital sales."
    second = "In 2023, revenue grew 12%, thanks to sales to hospitals!"  # other words, same terms
    budget = counter.count(first) + counter.count(second) + 2  # room for both, were they allowed
    for embed in (None, fake_embed):
        result = compress("hospital revenue growth and churn", chunks, target_tokens=budget, counter=counter,
                          embed=embed)
        kept = [s.original for s in result.sentences]
        assert (first in kept) != (second in kept)
        assert [d.reason for d in result.dropped if (d.chunk_id, d.start) in {("a", 0), ("b", 0)}] == ["duplicate"]
        assert "Churn fell to 3% among hospital customers." in kept


def test_without_query_scores_by_centrality(counter):
    chunks = [Chunk("x", "Hospital software revenue grew. Hospital software churn fell. "
                         "Hospital software pricing rose. The parking lot was repainted.")]
    result = compress(None, chunks, target_tokens=12, counter=counter)
    assert result.sentences and "parking" not in result.chunks[0].text


def test_prune_keeps_numbers_negations_and_names(counter):
    sentence = "Dr. Smith did not approve the merger with Acme in 2023, and the board never did."
    pruned = prune_sentence(sentence)
    words = [word.strip(".,") for word in pruned.split()]
    for word in ("Dr", "Smith", "not", "Acme", "2023", "never"):
        assert word in words
    for word in ("the", "with", "and", "in"):
        assert word not in words
    # the repeated "did" goes, and its period moves to the word before it
    assert pruned == "Dr. Smith did not approve merger Acme 2023, board never."
    assert prune_sentence("The cost was high, very very high.") == "The cost high, very."
    assert prune_sentence("It was not the end of it.") == "It not end."
    assert "don't" in prune_sentence("We don't sell to the hospitals.").split()


def test_prune_maps_spans_to_the_original_sentence(counter):
    result = compress("merger approval", CHUNKS, target_tokens=20, mode="prune", counter=counter)
    check_spans(result, CHUNKS)
    merger = [s for s in result.sentences if "merger" in s.original]
    assert merger, "the sentence about the merger is kept"
    assert merger[0].original == "Dr. Smith did not approve the merger."
    assert merger[0].text == prune_sentence(merger[0].original) != merger[0].original
    assert result.tokens_after <= 20


def test_prune_fits_more_than_extractive(counter):
    extractive = compress("hospital software procurement", CHUNKS, target_tokens=30, counter=counter)
    pruned = compress("hospital software procurement", CHUNKS, target_tokens=30, mode="prune", counter=counter)
    assert len(pruned.sentences) >= len(extractive.sentences)


def test_truncate_is_a_prefix(counter):
    result = compress("ignored", CHUNKS, target_tokens=30, mode="truncate", counter=counter)
    first = result.chunks[0]
    assert CHUNKS[0].text.startswith(first.text) and first.text  # c1 has 28 tokens... or its prefix
    texts = [chunk.text for chunk in result.chunks]
    for chunk, text in zip(CHUNKS, texts, strict=True):
        assert chunk.text.startswith(text)
    # chunks in order: once one is cut, the later ones are empty
    cut = next(i for i, (chunk, text) in enumerate(zip(CHUNKS, texts, strict=True)) if text != chunk.text)
    assert all(text == "" for text in texts[cut + 1:])
    assert result.tokens_after <= 30
    # the longest prefix: one more word would not fit
    chunk = CHUNKS[cut]
    longer = chunk.text[:len(texts[cut]) + 1 + len(chunk.text[len(texts[cut]):].split()[0])].rstrip()
    assert sum(counter.count(t) for t in texts[:cut]) + counter.count(longer) > 30
    check_spans(result, CHUNKS)


def test_budget_too_small_names_budget_and_smallest(counter):
    smallest = min(counter.count(chunk.text[a:b]) for chunk in CHUNKS for a, b in sentence_spans(chunk.text, 0,
                                                                                                  len(chunk.text)))
    with pytest.raises(BudgetTooSmall) as caught:
        compress("anything", CHUNKS, target_tokens=smallest - 1, counter=counter)
    assert isinstance(caught.value, ValueError)
    assert caught.value.budget == smallest - 1 and caught.value.smallest == smallest
    assert f"budget of {smallest - 1} tokens" in str(caught.value)
    assert f"{smallest} tokens" in str(caught.value)
    assert compress("anything", CHUNKS, target_tokens=smallest, counter=counter).tokens_after <= smallest
    with pytest.raises(BudgetTooSmall, match="budget of 0 tokens"):
        compress("anything", CHUNKS, target_tokens=0, mode="truncate", counter=counter)


@pytest.mark.parametrize("mode", ["extractive", "prune", "truncate"])
def test_large_budget_returns_everything_unchanged(counter, mode):
    before = sum(counter.count(chunk.text) for chunk in CHUNKS)
    for budget in (before, before + 100):
        result = compress("hospital", CHUNKS, target_tokens=budget, mode=mode, counter=counter)
        assert [chunk.text for chunk in result.chunks] == [chunk.text for chunk in CHUNKS]
        assert result.ratio == 1.0 and result.tokens_after == result.tokens_before == before
        assert not result.dropped
        check_spans(result, CHUNKS)
    assert compress(None, CHUNKS, ratio=1.0, mode=mode, counter=counter).ratio == 1.0


def test_arguments_are_checked(counter):
    with pytest.raises(ValueError, match="exactly one"):
        compress("q", CHUNKS, counter=counter)
    with pytest.raises(ValueError, match="exactly one"):
        compress("q", CHUNKS, target_tokens=10, ratio=0.5, counter=counter)
    with pytest.raises(ValueError, match="mode"):
        compress("q", CHUNKS, target_tokens=10, mode="abstractive", counter=counter)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        compress("q", [CHUNKS[0], CHUNKS[0]], target_tokens=10, counter=counter)
    with pytest.raises(ValueError, match="ratio"):
        compress("q", CHUNKS, ratio=0.0, counter=counter)


class SpaceCountingCounter:
    """Every word and every whitespace character is a token, so joining sentences costs a token each."""

    def count(self, text: str) -> int:
        return len(re.findall(r"\S+|\s", text))


@pytest.mark.parametrize("mode", ["extractive", "prune", "truncate"])
def test_separators_count_against_the_budget(mode):
    counter, rng, checked = SpaceCountingCounter(), random.Random(7), 0
    for _ in range(150):
        chunks = random_chunks(rng)
        budget = rng.randint(0, sum(counter.count(chunk.text) for chunk in chunks))
        try:
            result = compress("revenue risk", chunks, target_tokens=budget, mode=mode, counter=counter)
        except BudgetTooSmall:
            continue
        checked += 1
        assert sum(counter.count(chunk.text) for chunk in result.chunks) == result.tokens_after <= budget
        check_spans(result, chunks)
    assert checked > 80


# --- scoring and selection -------------------------------------------------------------------
def test_bm25_matches_the_keyword_index_formula():
    """Parity with `stratmaster.stores.bm25.Bm25Scorer`, the index the knowledge service searches."""
    from stratmaster.compression.extractive import _term_matrix, bm25
    from stratmaster.stores.bm25 import Bm25Scorer

    rng = random.Random(5)
    vocabulary = [f"t{i}" for i in range(12)]
    for _ in range(50):
        documents = [[rng.choice(vocabulary) for _ in range(rng.randint(0, 9))] for _ in range(rng.randint(1, 15))]
        query = [rng.choice(vocabulary) for _ in range(rng.randint(1, 6))]
        scorer = Bm25Scorer()
        for index, terms in enumerate(documents):
            scorer.add(str(index), "d", terms)
        expected = np.zeros(len(documents))
        for hit in scorer.search(query, k=len(documents)):
            expected[int(hit.chunk_id)] = hit.score
        if expected.max() > 0:
            expected /= expected.max()
        matrix, columns = _term_matrix(documents)
        assert bm25(query, matrix, columns) == pytest.approx(expected, abs=1e-9)


def test_the_floor_keeps_a_sentence_from_every_chunk_that_matches_the_query(counter):
    """Coverage: at a quarter of the tokens, each chunk about the query keeps a short sentence
    about it, instead of the top chunk taking the whole budget."""
    topics = ("surgery", "oncology", "radiology", "pediatrics", "cardiology", "dermatology")
    fillers = ("weather", "parking", "canteen", "holidays", "printers", "gardens", "lifts", "paint")
    chunks = []
    for i, topic in enumerate(topics):
        filler = " ".join(f"The {fillers[(i + n) % 8]} of the {topic} wing was {fillers[(i + n + 3) % 8]}-themed "
                          f"in {1990 + 7 * i + n} according to staff." for n in range(4))
        chunks.append(Chunk(f"d{i}", f"{filler} Hospital pricing for {topic} rose. {filler.upper()}"))
    result = compress("hospital pricing", chunks, ratio=0.25, counter=counter)
    assert all("Hospital pricing" in chunk.text for chunk in result.chunks)
    assert result.tokens_after <= result.budget
    without_floor = compress("hospital pricing", chunks, ratio=0.25, counter=counter, tuning=Tuning(floor_share=0))
    assert not all("Hospital pricing" in chunk.text for chunk in without_floor.chunks)


def test_earlier_chunks_get_more_of_the_budget_than_later_equal_ones(counter):
    """The chunk order is the retrieval rank: between equally relevant chunks, the earlier wins."""
    text = ("Hospital revenue grew 12% in 2023. Hospital churn fell to 3%. Hospital pricing rose by 5%. "
            "Hospital procurement took 9 months.")
    chunks = [Chunk(f"r{i}", text.replace("Hospital", f"Hospital {i}")) for i in range(4)]
    result = compress("hospital revenue churn pricing procurement", chunks, ratio=0.5, counter=counter)
    tokens = [chunk.tokens for chunk in result.chunks]
    assert tokens[0] == max(tokens) and tokens[0] > tokens[-1]


def test_semantic_scoring_embeds_only_the_lexically_best_sentences(counter):
    seen: list[int] = []

    def counting_embed(texts):
        seen.append(len(texts))
        return fake_embed(texts)

    compress("hospital software revenue", CHUNKS, target_tokens=30, counter=counter, embed=counting_embed,
             tuning=Tuning(embed_limit=3))
    assert seen == [1 + 3]  # the query and three sentences, in one call


# --- the target model's tokenizer ----------------------------------------------------------------
def test_the_embedding_models_names_count_with_its_wordpiece(counter):
    from stratmaster.compression.tokens import counter_for

    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        target = counter_for(name)
        for chunk in CHUNKS:
            assert target.count(chunk.text) == counter.count(chunk.text)


def test_a_model_without_a_local_tokenizer_is_refused_not_faked(tmp_path):
    from stratmaster.compression.tokens import TokenizerUnavailable, counter_for

    for model in ("openai-community/gpt2", "gpt-4o", "../../etc/passwd"):
        with pytest.raises(TokenizerUnavailable, match="available offline") as caught:
            counter_for(model, tmp_path)
        assert caught.value.model == model


def test_a_target_tokenizer_in_the_local_hub_cache_counts_the_budget(tmp_path, counter):
    """A tokenizer.json laid out as the Hugging Face hub caches it is found offline and used."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from stratmaster.compression.tokens import counter_for

    characters = Tokenizer(models.WordLevel({ch: i for i, ch in enumerate(sorted({*"".join(c.text for c in CHUNKS)}
                                                                                   | {"[UNK]"}))},
                                            unk_token="[UNK]"))
    characters.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")  # one token per character
    snapshot = tmp_path / "models--acme--char-model" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    characters.save(str(snapshot / "tokenizer.json"))
    (tmp_path / "models--acme--char-model" / "refs").mkdir()
    (tmp_path / "models--acme--char-model" / "refs" / "main").write_text("0123abcd")
    target = counter_for("acme/char-model", tmp_path)
    assert target.count("Acme cut prices.") == len("Acme cut prices.") != counter.count("Acme cut prices.")
    result = compress("Acme prices", CHUNKS, target_tokens=60, counter=target)
    assert sum(len(chunk.text) for chunk in result.chunks) == result.tokens_after <= 60
