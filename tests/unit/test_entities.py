"""The offline entity extractor on realistic text: strategy prose and CISI-style abstracts."""

from __future__ import annotations

import pytest

from stratmaster.knowledge.entities import (
    CONCEPT,
    PROPER,
    ExtractedEntity,
    entity_slug,
    extract_entities,
    fold_word,
    mentions_of,
)
from stratmaster.stores.protocols import Mention

STRATEGY = (
    "Procter & Gamble has long relied on premium pricing to protect its margins. In 2019 the company "
    "expanded its direct-to-consumer channels in North America, while Unilever pursued acquisitions in "
    "emerging markets. Analysts at Bank of America argue that premium pricing only works when brand equity "
    "is strong; when private-label competitors close the quality gap, Procter & Gamble adopted targeted "
    "promotions instead of across-the-board price cuts."
)

CISI = (
    "The Dewey Decimal Classification remains the most widely used library classification scheme in public "
    "libraries. This paper compares its retrieval performance with the Library of Congress Classification in "
    "an experimental information retrieval system. Automated indexing of 1,400 documents from the CISI "
    "collection improved retrieval effectiveness, measured by recall and precision. Information retrievals "
    "based on controlled vocabularies outperformed free-text searching for broad subject queries."
)

CITATIONS = (
    "Libraries use citation indexing to trace the growth of scientific literature. Citation analysis of "
    "journal articles shows that a small core of journals accounts for most citations, as Bradford's law "
    "predicts. The Institute for Scientific Information publishes the Science Citation Index."
)


def by_kind(text: str) -> dict[str, dict[str, str]]:
    """{kind: {entity_id: first name}}"""
    found: dict[str, dict[str, str]] = {PROPER: {}, CONCEPT: {}}
    for entity in extract_entities(text):
        found[entity.kind].setdefault(entity.entity_id, entity.name)
    return found


# --- proper names -----------------------------------------------------------------------
def test_proper_names_in_strategy_text() -> None:
    proper = by_kind(STRATEGY)[PROPER]
    assert proper == {
        "procter-and-gamble": "Procter & Gamble",
        "north-america": "North America",
        "unilever": "Unilever",
        "bank-of-america": "Bank of America",
    }


def test_proper_names_in_library_science_text() -> None:
    proper = by_kind(CISI)[PROPER]
    assert proper["dewey-decimal-classification"] == "Dewey Decimal Classification"  # "The" dropped
    assert proper["library-of-congress-classification"] == "Library of Congress Classification"
    assert proper["cisi"] == "CISI"
    assert "this" not in proper and "automated" not in proper and "information" not in proper


def test_connectors_need_a_capitalised_word_after_them() -> None:
    proper = by_kind("We met the Institute for Scientific Information and the Bank of the West. "
                     "Acme Corp of course disagreed.")[PROPER]
    assert set(proper.values()) == {"Institute for Scientific Information", "Bank of the West", "Acme Corp"}


def test_sentence_initial_single_words() -> None:
    proper = by_kind(CITATIONS)[PROPER]
    assert "library" not in proper and "citation" not in proper  # "Libraries use ...", "Citation analysis ..."
    assert proper["bradford"] == "Bradford"  # possessive dropped
    # Seen capitalised mid-sentence as well, so a name at the sentence start too.
    names = by_kind("Unilever cut prices. Analysts expect Unilever to gain share.")[PROPER]
    assert names == {"unilever": "Unilever"}


def test_acronyms() -> None:
    proper = by_kind("The firm sells to IBM and AT&T through its B2B unit in the US.")[PROPER]
    assert {"IBM", "AT&T", "B2B", "US"} <= set(proper.values())
    assert proper["at-and-t"] == "AT&T"


# --- concepts ---------------------------------------------------------------------------
def test_concepts_in_strategy_text() -> None:
    concepts = by_kind(STRATEGY)[CONCEPT]
    for expected in ("premium-pricing", "brand-equity", "emerging-market", "quality-gap", "targeted-promotion",
                     "direct-to-consumer-channel"):
        assert expected in concepts, expected
    assert concepts["premium-pricing"] == "premium pricing"
    assert not any(word in concepts for word in ("adopted-targeted-promotion", "company", "instead"))


def test_concepts_in_library_science_text() -> None:
    concepts = by_kind(CISI)[CONCEPT]
    for expected in ("information-retrieval", "automated-indexing", "retrieval-effectiveness",
                     "library-classification-scheme", "controlled-vocabulary", "public-library"):
        assert expected in concepts, expected
    assert concepts["information-retrieval"] == "information retrievals"


def test_concepts_never_cross_stopwords_punctuation_or_names() -> None:
    for entity in extract_entities(STRATEGY + " " + CISI + " " + CITATIONS):
        if entity.kind == CONCEPT:
            words = entity.name.split()
            assert 1 <= len(words) <= 4
            assert not {"the", "of", "and", "in", "is", "its", "with"} & set(words)
            assert "," not in entity.name and "." not in entity.name
            assert entity.name == entity.name.lower()


def test_verbs_after_a_subject_are_boundaries() -> None:
    concepts = by_kind("The library adopted automated indexing. The index provided faster access.")[CONCEPT]
    assert "automated-indexing" in concepts
    assert not any(entity_id.startswith("library-adopted") for entity_id in concepts)


def test_generic_modifiers_are_trimmed_and_lone_words_need_repeating() -> None:
    concepts = by_kind("Several important new pricing strategies emerged. Various results remain.")[CONCEPT]
    assert "pricing-strategy" in concepts
    assert "result" not in concepts and "remain" not in concepts


def test_concepts_are_capped_by_score_but_names_are_not() -> None:
    text = " ".join(f"Company{chr(65 + i)} Holdings studies topic{chr(97 + i)} pricing models." for i in range(20))
    entities = extract_entities(text, max_concepts=5)
    assert len({e.entity_id for e in entities if e.kind == CONCEPT}) == 5
    assert len({e.entity_id for e in entities if e.kind == PROPER}) == 20


def test_offsets_point_at_the_surface_text() -> None:
    for text in (STRATEGY, CISI, CITATIONS):
        entities = extract_entities(text)
        assert entities == sorted(entities, key=lambda e: (e.start, e.end))
        for entity in entities:
            assert " ".join(text[entity.start:entity.end].split()).lower() == entity.name.lower()


def test_every_occurrence_is_reported() -> None:
    spans = [(e.start, e.end) for e in extract_entities(STRATEGY) if e.entity_id == "procter-and-gamble"]
    assert len(spans) == 2 and STRATEGY[spans[1][0]:spans[1][1]] == "Procter & Gamble"


@pytest.mark.parametrize("text", ["", "   ", "1234 5678.", "!!! ???", "a b c", "THE END", "É", "\n\n\n"])
def test_degenerate_text(text: str) -> None:
    assert all(isinstance(e, ExtractedEntity) and e.entity_id for e in extract_entities(text))


def test_deterministic() -> None:
    assert extract_entities(CISI) == extract_entities(CISI)


# --- normalisation ----------------------------------------------------------------------
@pytest.mark.parametrize(("word", "folded"), [
    ("retrievals", "retrieval"), ("libraries", "library"), ("classes", "class"), ("searches", "search"),
    ("boxes", "box"), ("analysis", "analysis"), ("business", "business"), ("economics", "economics"),
    ("status", "status"), ("news", "news"), ("bus", "bus"), ("pricing", "pricing"), ("markets", "market"),
])
def test_fold_word(word: str, folded: str) -> None:
    assert fold_word(word) == folded


@pytest.mark.parametrize(("name", "slug"), [
    ("information retrievals", "information-retrieval"),
    ("Information Retrieval", "information-retrieval"),
    ("Procter & Gamble", "procter-and-gamble"),
    ("Procter and Gamble", "procter-and-gamble"),
    ("Gamble's", "gamble"),
    ("Café Économie", "cafe-economie"),
    ("direct-to-consumer channels", "direct-to-consumer-channel"),
    ("SMEs", "sme"),         # a plural of an acronym folds
    ("AIRBUS SYSTEMS", "airbus-systems"),  # all-caps words are acronyms: never folded
    ("  premium   pricing ", "premium-pricing"),
])
def test_entity_slug(name: str, slug: str) -> None:
    assert entity_slug(name) == slug


def test_mentions_of_one_per_entity_preferring_proper_names() -> None:
    entities = [
        ExtractedEntity("information retrieval", "information-retrieval", CONCEPT, 0, 21),
        ExtractedEntity("Information Retrieval", "information-retrieval", PROPER, 30, 51),
        ExtractedEntity("premium pricing", "premium-pricing", CONCEPT, 60, 75),
        ExtractedEntity("premium pricings", "premium-pricing", CONCEPT, 80, 96),
    ]
    assert mentions_of("c1", entities) == [
        Mention("c1", "information-retrieval", "Information Retrieval", PROPER),
        Mention("c1", "premium-pricing", "premium pricing", CONCEPT),
    ]
