"""Cutting normalised text into chunks that fit the embedding model and can be cited.

A chunk is a span of the normalised text (`text[start:end]`), never a rewritten copy,
so a citation can point at characters of the stored document. Chunks are sized in the
embedding model's own tokens: all-MiniLM-L6-v2 silently truncates past 256 positions,
two of which go to [CLS] and [SEP], hence `DEFAULT_MAX_TOKENS` = 254.

Packing keeps meaning together: whole paragraphs while they fit; a paragraph longer
than a chunk is cut between sentences; a sentence longer than a chunk between tokens,
at a word boundary where there is one. Consecutive chunks share about `overlap_tokens`
of text (whole trailing sentences where they fit, else the tail of the last sentence),
so a fact cut by a boundary is still whole in one of the two chunks; when the next
paragraph would not fit beside the full overlap, the overlap shrinks rather than the
paragraph being split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

DEFAULT_MAX_TOKENS = 254
DEFAULT_OVERLAP_TOKENS = 32


@dataclass(frozen=True, slots=True)
class Chunk:
    """`text == normalised_text[start:end]`; `token_count` as counted by the chunker's counter."""

    ordinal: int
    text: str
    start: int
    end: int
    token_count: int


@runtime_checkable
class TokenCounter(Protocol):
    def count(self, text: str) -> int:
        """Tokens in the text, without the model's special tokens."""

    def split(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        """Cut the text into consecutive char spans of at most `max_tokens` tokens each.

        Spans are in order, do not overlap, start and end on non-whitespace, and
        together cover every non-whitespace character of the text.
        """


class WordpieceCounter:
    """Counts the embedding model's WordPiece tokens with the fast `tokenizers` library.

    The model's tokenizer.json ships with truncation and padding to 128 enabled (a
    leftover of its training): both are switched off here, or every text would count
    as exactly 128 tokens.
    """

    def __init__(self, tokenizer_file: Path | None = None) -> None:
        from tokenizers import Tokenizer

        if tokenizer_file is None:
            from stratmaster.knowledge.embedding import model_dir

            tokenizer_file = model_dir() / "tokenizer.json"
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def split(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        offsets, word_ids = encoding.offsets, encoding.word_ids
        total = len(offsets)
        starts: list[int] = []  # index of the first token of each piece
        first = 0
        while first < total:
            starts.append(first)
            cut = min(total, first + max_tokens)
            if cut < total:
                cut = self._best_cut(text, offsets, word_ids, first, cut, max_tokens)
            first = cut
        return self._spans(text, offsets, starts, max_tokens)

    @staticmethod
    def _best_cut(text: str, offsets: list[tuple[int, int]], word_ids: list[int | None],
                  first: int, limit: int, max_tokens: int) -> int:
        """Index of the first token of the next piece: after whitespace, else between words."""
        floor = first + max(1, max_tokens // 2)  # do not leave pieces much shorter than asked
        for cut in range(limit, floor - 1, -1):
            start = offsets[cut][0]
            if start > 0 and text[start - 1].isspace():
                return cut
        for cut in range(limit, floor - 1, -1):
            if word_ids[cut] != word_ids[cut - 1]:
                return cut
        return limit

    def _spans(self, text: str, offsets: list[tuple[int, int]], starts: list[int],
               max_tokens: int) -> list[tuple[int, int]]:
        # A piece runs to where the next one starts, so characters no token covers
        # (ignored by the tokenizer) still belong to a span.
        bounds = [offsets[index][0] for index in starts] + [len(text)]
        bounds[0] = 0
        spans = []
        for begin, end in zip(bounds, bounds[1:], strict=False):
            begin, end = _trim(text, begin, end)
            if begin < end:
                spans.append((begin, end))
        # A cut inside a word (only when a "word" is longer than a piece) can re-tokenise
        # into more pieces than it had: split those spans again until each one fits.
        checked = []
        for begin, end in spans:
            if self.count(text[begin:end]) <= max_tokens or max_tokens == 1:
                checked.append((begin, end))
                continue
            pieces = self.split(text[begin:end], max(1, max_tokens - 1))
            checked.extend((begin + a, begin + b) for a, b in pieces)
        return checked


# --- spans ---------------------------------------------------------------------------------
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
_LINE_BREAK = re.compile(r"\n")
# End of sentence: terminal punctuation, optional closing quotes/brackets, whitespace.
# Matches start only at the first mark of a run, and never backtrack: linear on "....".
_TERMINALS = ".!?\u2026\u3002\uff01\uff1f"
_SENTENCE_END = re.compile(rf"(?<![{_TERMINALS}])[{_TERMINALS}]++[\"'\u201d\u2019)\]]*+(?=\s)")
_ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "cf", "al", "fig", "figs",
    "no", "nos", "vol", "p", "pp", "ch", "sec", "approx", "inc", "ltd", "co", "corp", "dept", "est", "jan",
    "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k", "ph.d",
})


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _split_spans(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    spans, begin = [], start
    for match in pattern.finditer(text, start, end):
        spans.append(_trim(text, begin, match.start()))
        begin = match.end()
    spans.append(_trim(text, begin, end))
    return [(a, b) for a, b in spans if a < b]


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """Char spans of the blank-line separated paragraphs, trimmed."""
    return _split_spans(text, 0, len(text), _PARAGRAPH_BREAK)


def _is_sentence_end(text: str, begin: int, match: re.Match[str]) -> bool:
    following = text[match.end():match.end() + 2].lstrip()
    if following[:1].islower():
        return False  # "e.g. the", "approx. three": a sentence does not start in lowercase
    if match.group().rstrip("\"')]\u201d\u2019") == ".":
        # The word the period ends; abbreviations are short, so look back a few chars only.
        word_start = match.start()
        while word_start > max(begin, match.start() - 8) and not text[word_start - 1].isspace():
            word_start -= 1
        token = text[word_start:match.start()].lower().lstrip("(\"'\u201c\u2018")
        if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
            return False  # "Dr. Smith", "J. Smith"
    return True


def sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Char spans of the sentences (and lines) of `text[start:end]`, trimmed."""
    spans = []
    for line_start, line_end in _split_spans(text, start, end, _LINE_BREAK):
        begin = line_start
        for match in _SENTENCE_END.finditer(text, line_start, line_end):
            if _is_sentence_end(text, begin, match):
                spans.append((begin, match.end()))
                begin = match.end()
        spans.append((begin, line_end))
    trimmed = (_trim(text, a, b) for a, b in spans)
    return [(a, b) for a, b in trimmed if a < b]


# --- packing -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Unit:
    """The smallest piece the packer moves: a sentence, or a token-split part of one."""

    start: int
    end: int
    tokens: int
    paragraph: int


def _units(text: str, counter: TokenCounter, max_tokens: int,
           overlap_tokens: int) -> tuple[list[_Unit], list[int], list[int]]:
    """Units in text order, each paragraph's token total and the index of its first unit.

    A sentence longer than a chunk is cut into pieces that leave room for the overlap,
    or consecutive pieces could never share any text.
    """
    piece_tokens = max(1, max_tokens - overlap_tokens)
    units: list[_Unit] = []
    paragraph_tokens: list[int] = []
    first_unit: list[int] = []
    for number, (p_start, p_end) in enumerate(paragraph_spans(text)):
        first_unit.append(len(units))
        for s_start, s_end in sentence_spans(text, p_start, p_end):
            tokens = counter.count(text[s_start:s_end])
            if tokens <= max_tokens:
                units.append(_Unit(s_start, s_end, tokens, number))
                continue
            for a, b in counter.split(text[s_start:s_end], piece_tokens):
                piece = text[s_start + a:s_start + b]
                units.append(_Unit(s_start + a, s_start + b, counter.count(piece), number))
        paragraph_tokens.append(sum(unit.tokens for unit in units[first_unit[-1]:]))
    return units, paragraph_tokens, first_unit


def _overlap_tail(text: str, counter: TokenCounter, units: list[_Unit], members: list[int],
                  chunk_start: int, overlap_tokens: int) -> list[_Unit]:
    """Trailing text of a chunk to repeat at the start of the next one, never the whole chunk."""
    if overlap_tokens <= 0:
        return []
    tail: list[_Unit] = []
    total = 0
    for index in reversed(members):
        unit = units[index]
        if unit.start <= chunk_start or total + unit.tokens > overlap_tokens:
            break
        tail.insert(0, unit)
        total += unit.tokens
    if tail:
        return tail
    # The last sentence alone is longer than the overlap: repeat its last words.
    last = units[members[-1]]
    word_starts = [m.start() for m in re.finditer(r"(?<=\s)\S", text[last.start:last.end])]
    word_starts = [last.start + offset for offset in word_starts if last.start + offset > chunk_start]
    # Fewer words, fewer tokens: find the earliest word start whose tail still fits.
    low, high = 0, len(word_starts)
    while low < high:
        middle = (low + high) // 2
        if counter.count(text[word_starts[middle]:last.end]) <= overlap_tokens:
            high = middle
        else:
            low = middle + 1
    if low == len(word_starts):
        return []
    begin = word_starts[low]
    return [_Unit(begin, last.end, counter.count(text[begin:last.end]), last.paragraph)]


def chunk_text(text: str, counter: TokenCounter, max_tokens: int = DEFAULT_MAX_TOKENS,
               overlap_tokens: int = DEFAULT_OVERLAP_TOKENS) -> list[Chunk]:
    """Chunks of normalised text (see `text.normalise_text`), in order, each within `max_tokens`.

    Offsets refer to `text` itself; pass the same string that is stored. Deterministic:
    the same text and counter give the same chunks, which the embedding cache relies on.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError("overlap_tokens must be at least 0 and less than max_tokens")
    units, paragraph_tokens, first_unit = _units(text, counter, max_tokens, overlap_tokens)
    chunks: list[Chunk] = []
    overlap: list[_Unit] = []
    members: list[int] = []

    def used() -> int:
        return sum(unit.tokens for unit in overlap) + sum(units[i].tokens for i in members)

    def flush() -> int:
        """Emit the current chunk; returns the unit index to continue from."""
        nonlocal overlap, members
        while True:
            start = overlap[0].start if overlap else units[members[0]].start
            end = units[members[-1]].end
            tokens = counter.count(text[start:end])
            if tokens <= max_tokens:
                break
            # Only when the counter is not additive over whitespace: give up overlap
            # first, then push trailing units back to the next chunk.
            if overlap:
                overlap = overlap[1:]
            elif len(members) > 1:
                members = members[:-1]
            else:  # a single unit was counted as fitting; counting it alone says so again
                break
        chunks.append(Chunk(len(chunks), text[start:end], start, end, tokens))
        resume = members[-1] + 1
        overlap = _overlap_tail(text, counter, units, members, start, overlap_tokens)
        members = []
        return resume

    index = 0
    while index < len(units):
        unit = units[index]
        paragraph = unit.paragraph
        whole = first_unit[paragraph] == index and paragraph_tokens[paragraph] <= max_tokens
        take = (first_unit[paragraph + 1] if paragraph + 1 < len(first_unit) else len(units)) if whole else index + 1
        need = paragraph_tokens[paragraph] if whole else unit.tokens
        if members and used() + need > max_tokens:
            index = flush()
            continue
        while overlap and used() + need > max_tokens:
            overlap = overlap[1:]
        members.extend(range(index, take))
        index = take
    if members:
        flush()
    return chunks

