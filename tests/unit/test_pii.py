"""PII detection: precision and recall on a labelled set, the checks that give precision, redaction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratmaster.security.pii import Finding, PiiKind, detect, iban_ok, luhn_ok, redact

CASES = [json.loads(line) for line in (Path(__file__).parents[1] / "data" / "pii_cases.jsonl").read_text().splitlines()]


def found(text: str) -> set[tuple[str, str]]:
    return {(str(f.kind), text[f.start:f.end]) for f in detect(text)}


def test_precision_and_recall_on_the_labelled_set_are_at_least_095():
    true_positive = false_positive = false_negative = 0
    for case in CASES:
        expected = {(p["kind"], p["value"]) for p in case["pii"]}
        got = found(case["text"])
        true_positive += len(got & expected)
        false_positive += len(got - expected)
        false_negative += len(expected - got)
    precision = true_positive / (true_positive + false_positive)
    recall = true_positive / (true_positive + false_negative)
    assert len(CASES) >= 60 and true_positive + false_negative >= 50, "the set must stay meaningful"
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["text"][:40])
def test_each_labelled_case(case):
    assert found(case["text"]) == {(p["kind"], p["value"]) for p in case["pii"]}


def test_checksums_decide_what_counts():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")
    assert not iban_ok("GB82WEST1234569876543"), "a GB IBAN has 22 characters"
    assert found("card 4111 1111 1111 1112") == set()
    assert found("all ones 1111 1111 1111 1111 1111") == set(), "one repeated digit is filler, not a card"


def test_redaction_replaces_each_finding_with_its_kind():
    text = "Mail ana@example.com, card 4111 1111 1111 1111, from 10.0.0.1."
    assert redact(text) == "Mail [EMAIL], card [CARD_NUMBER], from [IP_ADDRESS]."
    assert redact("nothing here") == "nothing here"


def test_spans_do_not_overlap_and_the_stricter_kind_wins():
    text = "IBAN GB82 WEST 1234 5698 7654 32 and SSN 123-45-6789"
    findings = detect(text)
    assert [f.kind for f in findings] == [PiiKind.IBAN, PiiKind.NATIONAL_ID]
    assert all(a.end <= b.start for a, b in zip(findings, findings[1:], strict=False))
    assert Finding(PiiKind.EMAIL, 0, 3).as_dict() == {"kind": "email", "start": 0, "end": 3}
