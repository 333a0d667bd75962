"""PII detection and redaction: emails, phone numbers, card numbers, IBANs, national ids, IPs.

Patterns find candidates; checks keep only real ones, which is where precision comes from:
card numbers must pass the Luhn check and have a known length, IBANs the ISO 13616 mod-97
check and their country's length, IPv4 addresses four octets of 0-255, US social security
numbers the SSA's allocation rules (no 000/666/9xx area, no 00 group, no 0000 serial), UK
National Insurance numbers their prefix rules. Phone numbers are the loosest kind: a
leading `+` and country code, or a national grouping with separators; bare digit runs are
not phones (order numbers, ids) and ISO dates are not either. Where candidates overlap the
stricter kind wins (card, IBAN, email, IP, national id, phone).

Precision and recall on the labelled set `tests/data/pii_cases.jsonl` are checked by
`tests/unit/test_pii.py`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class PiiKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    CARD = "card_number"
    IBAN = "iban"
    NATIONAL_ID = "national_id"
    IP = "ip_address"


@dataclass(frozen=True, slots=True)
class Finding:
    kind: PiiKind
    start: int
    end: int

    def as_dict(self) -> dict[str, object]:
        return {"kind": str(self.kind), "start": self.start, "end": self.end}


# --- checks -------------------------------------------------------------------------------------
def luhn_ok(digits: str) -> bool:
    total, double = 0, False
    for char in reversed(digits):
        value = int(char)
        if double:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
        double = not double
    return total % 10 == 0


# ISO 13616 lengths of the countries whose IBANs we expect to see (SWIFT registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18,
    "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23,
    "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27,
    "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26,
    "UA": 29, "VG": 24, "XK": 20,
}


def iban_ok(compact: str) -> bool:
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


# --- patterns -----------------------------------------------------------------------------------
_EMAIL = re.compile(r"(?<![\w.+'-])[A-Za-z0-9._%+'-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,24}(?![\w-])")
# 13-19 digits, optionally grouped by single spaces or dashes.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{0,4}(?:::?[0-9A-Fa-f]{1,4})*"
                   r"(?![0-9A-Fa-f:])")
_SSN = re.compile(r"(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])")
# UK National Insurance: two letters (not D F I Q U V; second not O; not BG GB NK KN TN NT ZZ), six digits, A-D.
_NINO = re.compile(r"(?<![A-Za-z0-9])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
                   r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])")
# International: +CC then 6-14 more digits in groups; national: (area) or leading 0 with separators.
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?![\d])")
_PHONE_NATIONAL = re.compile(r"(?<![\w(+])(?:\(\d{2,5}\)[ .-]?\d{3,4}[ .-]?\d{3,4}"
                             r"|(?:1[ .-])?\d{3}[.-]\d{3}[.-]\d{4}"
                             r"|0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4})(?![\w-])")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _cards(text: str) -> Iterable[Finding]:
    for match in _CARD.finditer(text):
        digits = _digits(match.group())
        separators = set(re.sub(r"\d", "", match.group()))
        if len(separators) > 1:  # "1234 5678-9012..." is not how cards are written
            continue
        if 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 1:
            yield Finding(PiiKind.CARD, match.start(), match.end())


def _ibans(text: str) -> Iterable[Finding]:
    for match in _IBAN.finditer(text):
        candidate = match.group()
        # A trailing group may run into the next word's letters; try the longest valid prefix.
        for end in range(len(candidate), 14, -1):
            compact = candidate[:end].replace(" ", "")
            if candidate[end - 1] != " " and iban_ok(compact):
                yield Finding(PiiKind.IBAN, match.start(), match.start() + end)
                break


def _ips(text: str) -> Iterable[Finding]:
    for match in _IPV4.finditer(text):
        if all(0 <= int(octet) <= 255 and (octet == "0" or not octet.startswith("0"))
               for octet in match.group().split(".")):
            yield Finding(PiiKind.IP, match.start(), match.end())
    for match in _IPV6.finditer(text):
        candidate = match.group().rstrip(":")
        if candidate.count(":") < 2:
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        yield Finding(PiiKind.IP, match.start(), match.start() + len(candidate))


def _national_ids(text: str) -> Iterable[Finding]:
    for match in _SSN.finditer(text):
        if ssn_ok(*match.groups()):
            yield Finding(PiiKind.NATIONAL_ID, match.start(), match.end())
    for match in _NINO.finditer(text):
        yield Finding(PiiKind.NATIONAL_ID, match.start(), match.end())


def _phones(text: str) -> Iterable[Finding]:
    for pattern in (_PHONE_INTL, _PHONE_NATIONAL):
        for match in pattern.finditer(text):
            value = match.group().rstrip(" .-")
            digits = _digits(value)
            if not 7 <= len(digits) <= 15 or _ISO_DATE.match(value):
                continue
            yield Finding(PiiKind.PHONE, match.start(), match.start() + len(value))


_DETECTORS = (  # strictest first: it wins where candidates overlap
    _cards, _ibans,
    lambda text: (Finding(PiiKind.EMAIL, m.start(), m.end()) for m in _EMAIL.finditer(text)),
    _ips, _national_ids, _phones,
)


def detect(text: str) -> list[Finding]:
    """Non-overlapping findings in text order."""
    kept: list[Finding] = []
    for detector in _DETECTORS:
        for finding in detector(text):
            if all(finding.end <= other.start or finding.start >= other.end for other in kept):
                kept.append(finding)
    return sorted(kept, key=lambda f: f.start)


def redact(text: str, findings: Iterable[Finding] | None = None) -> str:
    """The text with each finding replaced by `[KIND]`."""
    found = detect(text) if findings is None else sorted(findings, key=lambda f: f.start)
    parts, at = [], 0
    for finding in found:
        parts += [text[at:finding.start], f"[{finding.kind.upper()}]"]
        at = finding.end
    parts.append(text[at:])
    return "".join(parts)
