"""Text normalisation and HTML/Markdown extraction: one canonical text for offsets and hashes."""

from __future__ import annotations

import hashlib

import pytest

from stratmaster.knowledge.text import (
    PARSER_VERSION,
    content_sha256,
    html_to_text,
    markdown_to_text,
    normalise_text,
)


def test_parser_version_is_recorded_as_a_string():
    assert isinstance(PARSER_VERSION, str) and PARSER_VERSION


@pytest.mark.parametrize(("raw", "expected"), [
    ("a\r\nb\rc", "a\nb\nc"),
    ("  lots \t of\u00a0\u00a0space  ", "lots of space"),
    ("one\n\n\n\n two", "one\n\ntwo"),
    ("one\n \t \ntwo", "one\n\ntwo"),
    ("line\nbreak kept", "line\nbreak kept"),
    ("\ufb01ne \u2460 \uff21", "fine 1 A"),  # NFKC: ligature, circled digit, full-width letter
    ("bell\x07 null\x00 soft\u00adhyphen zero\u200bwidth", "bell null softhyphen zerowidth"),
    ("para\u2029next\u2028line", "para\n\nnext\nline"),
    ("\n\n  \n", ""),
])
def test_normalise_text(raw, expected):
    assert normalise_text(raw) == expected


def test_normalise_is_idempotent_and_keeps_joiners():
    text = "Family: \U0001F468\u200d\U0001F469\u200d\U0001F467 \n\n\n caf\u0065\u0301"
    once = normalise_text(text)
    assert normalise_text(once) == once
    assert "\u200d" in once and "caf\u00e9" in once  # NFKC composes e + combining acute


def test_lone_surrogates_do_not_break_hashing():
    text = normalise_text("bad \ud800 half")
    assert text == "bad \ufffd half"
    assert len(content_sha256(text)) == 64


def test_content_sha256_is_sha256_of_utf8():
    assert content_sha256("héllo") == hashlib.sha256("héllo".encode()).hexdigest()
    assert content_sha256("a") != content_sha256("a ")


HTML = """<!doctype html>
<html><head><title>Quarterly Review</title>
<style>body { color: red }</style><script>var p = "<p>not text</p>";</script></head>
<body>
<nav><a href="/">Home</a> <a href="/about">About</a></nav>
<h1>Quarterly Review</h1>
<p>Revenue grew   by 5&nbsp;% &amp; costs fell &lt;2%.
Second line of the same paragraph.</p>
<ul><li>First item</li><li>Second <b>bold</b> item</li></ul>
<table><tr><th>Region</th><th>Sales</th></tr><tr><td>EMEA</td><td>10</td></tr></table>
<div>Before<br>after break</div>
<pre>code   keeps
lines</pre>
<svg><title>chart icon</title></svg>
<noscript>Enable JavaScript</noscript>
</body></html>"""


def test_html_to_text_keeps_content_and_structure():
    text = html_to_text(HTML)
    assert text.split("\n\n") == [
        "Quarterly Review",
        "Revenue grew by 5 % & costs fell <2%. Second line of the same paragraph.",
        "First item\nSecond bold item",
        "Region Sales\nEMEA 10",
        "Before\nafter break",
        "code keeps\nlines",
    ]


def test_html_to_text_drops_scripts_styles_navigation_and_head():
    text = html_to_text(HTML)
    for absent in ("not text", "color", "Home", "About", "chart icon", "Enable JavaScript"):
        assert absent not in text


def test_html_title_leads_only_when_the_body_does_not_show_it():
    assert html_to_text(HTML).count("Quarterly Review") == 1
    page = "<html><head><title>Only in head</title></head><body><p>Body.</p></body></html>"
    assert html_to_text(page) == "Only in head\n\nBody."


def test_html_tolerates_broken_markup():
    assert html_to_text("<p>unclosed <b>bold <i>italic</p><p>next") == "unclosed bold italic\n\nnext"
    assert html_to_text("</script>stray close<nav>menu") == "stray close"


MARKDOWN = """# Strategy *Memo* #

Intro with **bold**, _emphasis_, ~~struck~~, `inline *code*` and a [link](https://example.com "title").
An image ![chart of sales](chart.png) and <https://auto.example>. Keep snake_case and 2*3*4.

Setext heading
--------------

- [x] done item
* star item
1. numbered item

> quoted line
> second quoted

| Region | Sales |
|:-------|------:|
| EMEA   | 10    |

```python
def total(xs):
    return sum(xs)  # *not* emphasis
```

***

[ref]: https://example.com/ref
Escaped \\*stars\\* and a [reference link][ref].
"""


def test_markdown_to_text():
    assert markdown_to_text(MARKDOWN).split("\n\n") == [
        "Strategy Memo",
        "Intro with bold, emphasis, struck, inline *code* and a link.\n"
        "An image chart of sales and https://auto.example. Keep snake_case and 2*3*4.",
        "Setext heading",
        "done item\nstar item\nnumbered item",
        "quoted line\nsecond quoted",
        "Region Sales\nEMEA 10",
        "def total(xs):\nreturn sum(xs) # *not* emphasis",
        "Escaped *stars* and a reference link.",
    ]


def test_markdown_pipes_outside_tables_are_text():
    assert markdown_to_text("a | b is not a table") == "a | b is not a table"


def test_outputs_are_normalised():
    for text in (html_to_text(HTML), markdown_to_text(MARKDOWN)):
        assert normalise_text(text) == text
