"""Turning uploaded text, HTML or Markdown into one canonical plain text.

Everything downstream (chunk offsets, citations, content hashes, the embedding cache)
is computed on the output of these functions, so they must be deterministic: the same
input always gives the same characters. Change their behaviour and bump
`PARSER_VERSION`, which provenance records, so old chunks can be told from new ones.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from html.parser import HTMLParser

PARSER_VERSION = "text-1"

# Line and paragraph separators that are not "\n": each becomes a newline (U+2029 a
# paragraph break) so that paragraph detection sees one convention.
_NEWLINES = re.compile(r"\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028]")
# Invisible format characters that only get in the way of tokenisation and matching.
# Zero-width (non-)joiners are kept: some scripts and emoji sequences need them.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u2060\ufeff\u180e"), None)
# C0/C1 control characters except tab and newline; lone surrogates (not UTF-8 encodable).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SPACES_IN_LINE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{2,}")


def normalise_text(text: str) -> str:
    """Canonical plain text: NFKC, "\\n" newlines, single spaces, paragraphs split by one blank line.

    Single newlines inside a paragraph are kept (list items, verse, code); any run of
    blank lines becomes exactly one, which is what `chunking` treats as a paragraph break.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _NEWLINES.sub("\n", text).replace("\u2029", "\n\n")
    text = _SURROGATE.sub("\ufffd", _CONTROL.sub("", text.translate(_INVISIBLE)))
    lines = (_SPACES_IN_LINE.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def content_sha256(text: str) -> str:
    """Hex SHA-256 of the text's UTF-8 bytes: the identity of a document's content."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# --- HTML ---------------------------------------------------------------------------------
_SKIPPED = frozenset({"script", "style", "nav", "head", "noscript", "template", "svg", "iframe", "object"})
_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog", "div", "dl",
    "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hgroup", "hr", "html", "legend", "main", "ol", "p", "pre", "section", "summary", "table", "tbody",
    "tfoot", "thead", "ul",
})
# Rows of a list or table stay lines of one paragraph, so a short list is chunked whole.
_LINES = frozenset({"li", "tr", "br", "option"})
_CELLS = frozenset({"td", "th"})
_WHITESPACE = re.compile(r"\s+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities arrive decoded in handle_data
        self.parts: list[str] = []
        self.title: list[str] = []
        self._skip: list[str] = []
        self._in_title = False
        self._pre = 0
        self._pending = 0  # newlines owed before the next text: adjacent boundaries merge

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and not self.title and "svg" not in self._skip:
            self._in_title = True  # the page's title, not an SVG's <title> tooltip
        if self._skip:
            if tag in _SKIPPED:
                self._skip.append(tag)
            return
        if tag in _SKIPPED:
            self._skip.append(tag)
        elif tag == "pre":
            self._pre += 1
            self._boundary(tag)
        else:
            self._boundary(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self._skip and tag not in _SKIPPED:
            self._boundary(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if self._skip:
            if tag in self._skip:  # close the innermost match; tolerates unclosed tags inside
                del self._skip[len(self._skip) - 1 - self._skip[::-1].index(tag):]
            return
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
        self._boundary(tag)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        if self._skip or (self._pending and not self._pre and data.isspace()):
            return
        if self._pending:
            self.parts.append("\n" * self._pending)
            self._pending = 0
        self.parts.append(data if self._pre else _WHITESPACE.sub(" ", data))

    def _boundary(self, tag: str) -> None:
        if tag in _BLOCKS:
            self._pending = 2
        elif tag in _LINES:
            self._pending = max(self._pending, 1)
        elif tag in _CELLS:
            self.parts.append(" ")


def _same_words(a: str, b: str) -> bool:
    return _WHITESPACE.sub(" ", a).strip().casefold() == _WHITESPACE.sub(" ", b).strip().casefold()


def html_to_text(html: str) -> str:
    """Readable text of an HTML page: no scripts, styles, navigation or head matter.

    Block elements become paragraph breaks, list items and table rows lines, table cells
    are separated by spaces. The <title> leads the text unless the body already shows it
    (usually as its <h1>), so it is neither lost nor duplicated.
    """
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    body = normalise_text("".join(parser.parts))
    title = normalise_text(" ".join(parser.title))
    if title and not any(_same_words(title, block) for block in body.split("\n\n")):
        return normalise_text(title + "\n\n" + body)
    return body


# --- Markdown -----------------------------------------------------------------------------
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_ATX_HEADING = re.compile(r"^\s{0,3}#{1,6}(?:\s+(.*?))?(?:\s+#+)?\s*$")
_SETEXT_OR_RULE = re.compile(r"^\s{0,3}(?:[=]+|[-*_](?:\s*[-*_]){2,}|-+)\s*$")
_QUOTE = re.compile(r"^\s{0,3}(?:>\s?)+")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+(?:\[[ xX]\]\s+)?")
# Possessive quantifiers (*+) never give back whitespace: without them a long blank run
# before a non-separator costs quadratic backtracking.
_TABLE_SEPARATOR = re.compile(r"^\s*+\|?+\s*+:?+-{2,}+:?+\s*+(?:\|\s*+:?+-{2,}+:?+\s*+)*+\|?+\s*+$")
_REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+\S+.*$")
# Bracket classes exclude "[" so that a line of unclosed brackets is scanned in linear time.
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_IMAGE = re.compile(r"!\[([^\[\]]*)\]\([^()]*\)|!\[([^\[\]]*)\]\[[^\[\]]*\]")
_LINK = re.compile(r"\[([^\[\]]+)\]\((?:[^()\s]|\([^()]*\))*(?:\s+\"[^\"]*\")?\)|\[([^\[\]]+)\]\[[^\[\]]*\]")
_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^>\s]+)>")
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
# Emphasis content never contains its own delimiter: each scan stops at the next one,
# which keeps a long line of unmatched markers linear instead of quadratic.
_EMPHASIS = (
    re.compile(r"(\*\*|__)(?=\S)((?:(?!\1).)+?)(?<=\S)\1"),
    re.compile(r"(?<![\w*])\*(?=[^\s*])([^*]+?)(?<=\S)\*(?![\w*])"),
    re.compile(r"(?<![\w_])_(?=[^\s_])([^_]+?)(?<=\S)_(?![\w_])"),
    re.compile(r"~~(?=\S)((?:(?!~~).)+?)(?<=\S)~~"),
)
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~<])")
_PLACEHOLDER = "\ue000{}\ue001"  # private-use marks protecting code spans and escapes from inline rules
_PLACEHOLDER_RE = re.compile("\ue000(\\d+)\ue001")


def _inline(text: str) -> str:
    codes: list[str] = []

    def keep_code(match: re.Match[str]) -> str:
        codes.append(match.group(2).strip() or match.group(2))
        return _PLACEHOLDER.format(len(codes) - 1)

    def keep_escaped(match: re.Match[str]) -> str:
        codes.append(match.group(1))
        return _PLACEHOLDER.format(len(codes) - 1)

    text = text.replace("\ue000", "").replace("\ue001", "")  # our marks; meaningless private-use in input
    text = _CODE_SPAN.sub(keep_code, text)
    text = _ESCAPE.sub(keep_escaped, text)  # "\*" is a literal star, not emphasis
    text = _IMAGE.sub(lambda m: m.group(1) or m.group(2) or "", text)
    text = _LINK.sub(lambda m: m.group(1) or m.group(2), text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _HTML_TAG.sub("", text)
    for pattern in _EMPHASIS:  # strong before single: "***x***" -> "*x*" -> "x"
        text = pattern.sub(lambda m: m.group(m.lastindex or 1), text)
    return _PLACEHOLDER_RE.sub(lambda m: codes[int(m.group(1))], text)


def _table_row(line: str) -> str:
    row = line.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    cells = re.split(r"(?<!\\)\|", row)
    return " ".join(cell.strip().replace("\\|", "|") for cell in cells if cell.strip())


def markdown_to_text(markdown: str) -> str:
    """Plain text of a Markdown document, without a Markdown library.

    Headings become their own paragraphs, links and images their text, list items and
    table rows lines (cells separated by spaces); fenced code is kept verbatim, because
    identifiers in code are exactly what a keyword search needs to find.
    """
    out: list[str] = []
    fence: str | None = None
    lines = _NEWLINES.sub("\n", markdown).split("\n")
    table_rows = _table_rows(lines)
    for index, line in enumerate(lines):
        if fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                fence = None
                out.append("")
            else:
                out.append(line)
            continue
        opening = _FENCE.match(line)
        if opening:
            fence = opening.group(1)
            out.append("")
            continue
        if _TABLE_SEPARATOR.match(line) and "|" in line or _REFERENCE_DEFINITION.match(line):
            continue
        heading = _ATX_HEADING.match(line)
        if heading:
            out.extend(["", _inline(heading.group(1) or ""), ""])
            continue
        if _SETEXT_OR_RULE.match(line):
            # An underline turns the previous line into a heading; otherwise it is a rule.
            out.append("")
            continue
        line = _QUOTE.sub("", line)
        line = _LIST_ITEM.sub("", line)
        if index in table_rows:
            line = _table_row(line)
        out.append(_inline(line))
    return normalise_text("\n".join(out))


def _table_rows(lines: list[str]) -> set[int]:
    """Indices of pipe lines in a block of pipe lines that has a separator row (a table)."""
    rows: set[int] = set()
    index = 0
    while index < len(lines):
        if "|" not in lines[index]:
            index += 1
            continue
        end = index
        while end < len(lines) and "|" in lines[end]:
            end += 1
        if any(_TABLE_SEPARATOR.match(lines[i]) for i in range(index, end)):
            rows.update(range(index, end))
        index = end
    return rows
