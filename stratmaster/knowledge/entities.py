"""Offline entity and key-phrase extraction: no model, no download, deterministic.

`extract_entities(text)` returns the entities of one chunk as `ExtractedEntity` records,
one per occurrence, in text order. Two kinds:

* **proper** - capitalised multi-word sequences and acronyms: "Bank of America",
  "Procter & Gamble", "Dewey Decimal Classification", "IBM". Inside a name the
  connectors `of`, `for`, `&` (and `the` right after `of`/`for`: "Bank of the West")
  are allowed when a capitalised word follows them. A name never starts with a
  stopword ("The Dewey Decimal Classification" gives "Dewey Decimal Classification").
  A single capitalised word at the start of a sentence is ambiguous ("Libraries use...")
  and is only kept when the same word also appears capitalised mid-sentence in the text
  (or is an acronym); otherwise it is read as an ordinary word.
* **concept** - RAKE-style key phrases (Rose et al., 2010): candidate phrases are runs of
  content words between stopwords, punctuation, numbers and proper names. Heuristics,
  all applied per run:
    - words shorter than 3 letters, numbers and words containing digits end a run;
    - adverbs (lower-case words ending in "-ly", minus a few nouns such as "supply")
      end a run;
    - a "-ed" word right after a content word or a proper name is read as a verb
      ("Procter & Gamble adopted premium pricing", "the library adopted automated
      indexing") and ends the run; after a stopword it is an adjective and stays
      ("the automated indexing");
    - generic modifiers (`GENERIC_MODIFIERS`: "new", "important", "various", ...) are
      trimmed from both ends of a phrase;
    - runs longer than 4 words keep their last 4 (English noun phrases are head-final);
    - a single-word phrase must be 4+ letters, not a generic noun (`GENERIC_NOUNS`) and
      its word must occur at least twice in the text (alone or inside phrases): a lone
      word seen once is as likely a verb ("remains") as a topic.
  Phrases are scored the RAKE way (sum over words of degree / frequency, counted over the
  whole text) and the best `max_concepts` (default 12) distinct concepts are kept, with
  every occurrence of each. All proper names are kept.

`entity_id` is a stable slug of the normalised form: lower case, accents stripped,
"&" read as "and", each word light-folded from plural to singular (`fold_word`:
"-ies" -> "-y", "-sses" -> "-ss", "-ches/-shes/-xes/-zes" -> drop "es", else a final
"s" is dropped unless the word ends in "ss", "us", "is", "ics" or is short or listed in
`NO_FOLD`), possessive "'s" dropped, words joined with "-". So "information retrievals"
and "Information Retrieval" both give "information-retrieval". Acronyms are not folded.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from stratmaster.stores.protocols import Mention

PROPER = "proper"
CONCEPT = "concept"
DEFAULT_MAX_CONCEPTS = 12
MAX_PHRASE_WORDS = 4
MIN_WORD_LETTERS = 3
MIN_SINGLE_WORD_FREQUENCY = 2

# Function words and very common verbs (a compact SMART/RAKE-style stoplist).
STOPWORDS = frozenset("""
a about above across after again against all almost along already also although always am among an and another
any anyone anything are around as at be became because become becomes been before being below between both but
by can cannot could did do does doing done down during each either else enough etc even ever every few for from
further had has have having he her here hers herself him himself his how however i if in into is it its itself
just least less let like made make makes making many may me might more most much must my myself near neither
never no nor not now of off often on once one only onto or other others otherwise our ours ourselves out over own
per perhaps rather same several shall she should since so some such than that the their theirs them themselves
then there therefore these they this those though through thus to together too toward towards under until up upon
us use used uses using very via was we well were what whatever when where whether which while who whom whose why
will with within without would yet you your yours yourself yourselves
able according accordingly across actually around aside based called came come comes describe described describes
discuss discussed discusses does due e.g eg find finds found get gets getting give given gives giving go goes going
gone got i.e ie include included includes including keep kept know known knows look looks mainly may mostly need
needs new nevertheless non nonetheless noted obtain obtained paper provide provided provides providing put regarding
said say says see seem seemed seems seen show showed shown shows take taken takes taking tell tends took toward try
tried tries upon want wants way ways whereas whereby wherein yes
again hence indeed instead maybe quite still thereby
""".split())

# Modifiers that say little on their own: trimmed from either end of a concept phrase.
GENERIC_MODIFIERS = frozenset("""
additional available best better big certain clear common current different early easy entire existing extensive
first following full general good great greater greatest high higher highest important key large larger largest
last late latest likely little long low lower main major many minor modern more most much multiple necessary next
numerous old other overall particular possible potential present previous primary real recent relevant same
second significant similar simple single small smaller specific strong successful such third total true typical
various whole wide wider
""".split())

# Single words too generic to be a concept of their own (still fine inside a phrase).
GENERIC_NOUNS = frozenset("""
approach approaches area areas aspect aspects case cases change changes example examples fact facts form forms
issue issues kind kinds level levels lot lots method methods number numbers part parts point points problem
problems process processes question questions result results study studies subject subjects term terms thing
things time times type types use uses value values work works year years article articles paper papers
""".split())

# Lower-case words ending in "-ly" that are nouns, not adverbs.
LY_NOUNS = frozenset("ally anomaly assembly belly family italy monopoly oligopoly rally reply supply".split())
# Words whose final "s" is not a plural.
NO_FOLD = frozenset("""
always analysis basis bias business canvas chaos crisis diagnosis emphasis gas hypothesis lens means news
series species status synopsis synthesis thesis various whereas
""".split())

NAME_CONNECTORS = frozenset({"of", "for", "&"})
NAME_STOPWORD_EXCEPTIONS = frozenset({"US"})  # all-caps stopwords that are names
# "-ed" words that are not past participles.
ED_NOT_VERBS = frozenset("bed bred embed fled hundred kindred led naked red sacred shed shred wed wicked".split())
SENTENCE_END = frozenset(".!?;:")

_TOKEN = re.compile(
    r"(?P<word>[^\W\d_](?:[\w]|['’&.-](?=[^\W_]))*)"   # words, with inner ' ’ & . - (AT&T, e-mail, U.S)
    r"|(?P<number>\d+(?:[.,]\d+)*%?)"
    r"|(?P<amp>&)"
    r"|(?P<punct>[^\w\s])",
    re.UNICODE,
)
_POSSESSIVE = re.compile(r"['’]s$", re.IGNORECASE)
_SLUG_JUNK = re.compile(r"[^\w]+|_+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class ExtractedEntity:
    """One occurrence of an entity: `text[start:end]` is its surface form."""

    name: str
    entity_id: str
    kind: str
    start: int
    end: int
    score: float = 0.0  # RAKE score for concepts; 0.0 for proper names


@dataclass(slots=True)
class _Token:
    text: str
    start: int
    end: int
    kind: str           # word | number | amp | punct
    sentence_start: bool

    @property
    def lower(self) -> str:
        return self.text.lower()

    @property
    def capitalised(self) -> bool:
        return self.kind == "word" and self.text[0].isupper()

    @property
    def acronym(self) -> bool:
        letters = [c for c in self.text if c.isalpha()]
        return self.kind == "word" and len(letters) >= 2 and all(c.isupper() for c in letters)


# --- normalisation ----------------------------------------------------------------------
@lru_cache(maxsize=1 << 16)  # pure, and called for every word of every chunk
def fold_word(word: str) -> str:
    """Light plural folding of one lower-case word (see module doc); not a stemmer."""
    if len(word) <= 3 or word in NO_FOLD or not word.endswith("s"):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith(("ches", "shes", "xes", "zes")):
        return word[:-2]
    if word.endswith(("ss", "us", "is", "ics")):
        return word
    return word[:-1]


def _ascii_fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@lru_cache(maxsize=1 << 16)
def entity_slug(name: str) -> str:
    """The stable id of an entity name: lower case, plural-folded words joined by "-"."""
    words = []
    for match in _TOKEN.finditer(_ascii_fold(name)):
        kind = match.lastgroup
        token = match.group()
        if kind == "amp":
            words.append("and")
        elif kind in ("word", "number"):
            stripped = _POSSESSIVE.sub("", token)
            is_acronym = sum(c.isupper() for c in stripped) >= 2 and not any(c.islower() for c in stripped)
            for part in _SLUG_JUNK.split(stripped.replace("&", " and ").lower()):
                if part:
                    words.append(part if is_acronym else fold_word(part))
    return "-".join(words)


# --- tokenising -------------------------------------------------------------------------
def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    sentence_start = True
    previous_end = 0
    for match in _TOKEN.finditer(text):
        if "\n\n" in text[previous_end:match.start()]:
            sentence_start = True  # a paragraph break ends a heading or a list item
        kind = match.lastgroup or "punct"
        word = match.group()
        end = match.end()
        tokens.append(_Token(word, match.start(), end, kind, sentence_start))
        if kind == "punct" and word in SENTENCE_END:
            sentence_start = True
        elif kind in ("word", "number"):
            sentence_start = False
        previous_end = end
    return tokens


def _name_end(token: _Token) -> int:
    """End offset of a token without a possessive "'s"."""
    match = _POSSESSIVE.search(token.text)
    return token.end - (len(match.group()) if match else 0)


# --- proper names -----------------------------------------------------------------------
def _name_word(token: _Token) -> bool:
    """A capitalised word that may be part of a name: stopwords never are, "US" is."""
    return token.capitalised and (token.lower not in STOPWORDS or token.text in NAME_STOPWORD_EXCEPTIONS)


def _proper_spans(tokens: Sequence[_Token]) -> list[tuple[int, int]]:
    """Token index ranges [i, j) of proper names."""
    # Words seen capitalised on their own mid-sentence ("... while Unilever pursued"):
    # evidence that the same word at a sentence start is a name too. A word inside a
    # longer name ("Science Citation Index") is no such evidence for "Citation analysis".
    capitalised_mid_sentence = {
        t.text for index, t in enumerate(tokens)
        if _name_word(t) and not t.sentence_start
        and not (index > 0 and _name_word(tokens[index - 1]))
        and not (index + 1 < len(tokens) and _name_word(tokens[index + 1]))
    }
    spans: list[tuple[int, int]] = []
    i = 0
    n = len(tokens)
    while i < n:
        token = tokens[i]
        if not _name_word(token):
            i += 1
            continue
        j = i + 1
        while j < n:
            nxt = tokens[j]
            if _name_word(nxt) and not nxt.sentence_start:
                j += 1
                continue
            # connectors: "of", "for", "&", optionally "of the", then a capitalised word
            k = j
            if k < n and (tokens[k].lower in NAME_CONNECTORS or tokens[k].kind == "amp"):
                k += 1
                if k < n and tokens[k].lower == "the" and tokens[k - 1].lower in ("of", "for"):
                    k += 1
                if k < n and tokens[k].capitalised and tokens[k].lower not in STOPWORDS and k > j:
                    j = k + 1
                    continue
            break
        # a possessive ends a name: "Gamble's strategy"
        for m in range(i, j):
            if _POSSESSIVE.search(tokens[m].text):
                j = m + 1
                break
        single = j - i == 1
        if single and token.sentence_start and not token.acronym and token.text not in capitalised_mid_sentence:
            i += 1
            continue
        if single and len(token.text) < 2:
            i += 1
            continue
        spans.append((i, j))
        i = j
    return spans


# --- concepts (RAKE) --------------------------------------------------------------------
def _is_adverb(word: str) -> bool:
    return word.endswith("ly") and len(word) > 4 and word not in LY_NOUNS


def _verb_like(word: str) -> bool:
    return word.endswith("ed") and not word.endswith("eed") and word not in ED_NOT_VERBS


def _content_word(token: _Token) -> bool:
    return token.kind == "word" and _content_lower(token.lower)


@lru_cache(maxsize=1 << 16)
def _content_lower(word: str) -> bool:
    letters = sum(c.isalpha() for c in word)
    return (
        word not in STOPWORDS
        and letters >= MIN_WORD_LETTERS
        and not any(c.isdigit() for c in word)
        and not _is_adverb(word)
    )


def _candidate_runs(tokens: Sequence[_Token], proper_tokens: set[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    current: list[int] = []

    def flush() -> None:
        if current:
            runs.append(list(current))
            current.clear()

    for index, token in enumerate(tokens):
        if index in proper_tokens:
            flush()
            continue
        # A capitalised word mid-sentence that is not part of a name (e.g. a lone
        # "Unilever" dropped as sentence-initial elsewhere) is not a concept word.
        if token.capitalised and not token.sentence_start:
            flush()
            continue
        if not _content_word(token):
            flush()
            continue
        if _verb_like(token.lower) and index > 0:
            previous = index - 1
            after_content = previous in proper_tokens or (
                _content_word(tokens[previous]) and not _verb_like(tokens[previous].lower))
            if after_content:  # "<noun> adopted ..." reads as a verb: a boundary
                flush()
                continue
        current.append(index)
        # a possessive ends the phrase ("the company's pricing" -> "company", "pricing")
        if _POSSESSIVE.search(token.text):
            flush()
    flush()

    phrases: list[list[int]] = []
    for run in runs:
        while run and tokens[run[0]].lower in GENERIC_MODIFIERS:
            run = run[1:]
        while run and tokens[run[-1]].lower in GENERIC_MODIFIERS:
            run = run[:-1]
        if len(run) > MAX_PHRASE_WORDS:
            run = run[-MAX_PHRASE_WORDS:]
        if not run:
            continue
        if len(run) == 1:
            word = _POSSESSIVE.sub("", tokens[run[0]].lower)
            if len(word) < 4 or word in GENERIC_NOUNS or fold_word(word) in GENERIC_NOUNS:
                continue
        phrases.append(run)
    return phrases


def _surface(text: str, tokens: Sequence[_Token], first: int, last: int) -> tuple[int, int, str]:
    start = tokens[first].start
    end = _name_end(tokens[last])
    return start, end, " ".join(text[start:end].split())


def extract_entities(text: str, max_concepts: int = DEFAULT_MAX_CONCEPTS) -> list[ExtractedEntity]:
    """Proper names and the best `max_concepts` key phrases of `text`, every occurrence, in text order."""
    if not text or not text.strip():
        return []
    tokens = _tokens(text)
    found: list[ExtractedEntity] = []

    proper_tokens: set[int] = set()
    for first, stop in _proper_spans(tokens):
        start, end, name = _surface(text, tokens, first, stop - 1)
        slug = entity_slug(name)
        if not slug:
            continue
        proper_tokens.update(range(first, stop))
        found.append(ExtractedEntity(name=name, entity_id=slug, kind=PROPER, start=start, end=end))

    phrases = _candidate_runs(tokens, proper_tokens)
    # RAKE word scores over folded words: degree (sum of the lengths of the phrases a
    # word occurs in) divided by frequency.
    frequency: dict[str, int] = defaultdict(int)
    degree: dict[str, int] = defaultdict(int)
    folded_phrases = []
    for run in phrases:
        words = [fold_word(_POSSESSIVE.sub("", tokens[i].lower)) for i in run]
        folded_phrases.append(words)
        for word in words:
            frequency[word] += 1
            degree[word] += len(words)
    occurrences: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    scores: dict[str, float] = {}
    for run, words in zip(phrases, folded_phrases, strict=True):
        if len(words) == 1 and frequency[words[0]] < MIN_SINGLE_WORD_FREQUENCY:
            continue  # a lone word seen once is as likely a verb as a topic
        start, end, surface = _surface(text, tokens, run[0], run[-1])
        slug = entity_slug(surface)
        if not slug:
            continue
        occurrences[slug].append((start, end, surface.lower()))
        scores[slug] = max(scores.get(slug, 0.0), sum(degree[w] / frequency[w] for w in words))
    proper_ids = {e.entity_id for e in found}
    ranked = sorted(
        (slug for slug in occurrences if slug not in proper_ids),
        key=lambda slug: (-scores[slug], -len(occurrences[slug]), occurrences[slug][0][0]),
    )
    for slug in ranked[:max(0, max_concepts)]:
        for start, end, surface in occurrences[slug]:
            found.append(ExtractedEntity(name=surface, entity_id=slug, kind=CONCEPT, start=start, end=end,
                                         score=round(scores[slug], 4)))
    found.sort(key=lambda e: (e.start, e.end))
    return found


def mentions_of(chunk_id: str, entities: Iterable[ExtractedEntity]) -> list[Mention]:
    """One `Mention` per distinct entity of a chunk: a proper-name spelling wins, else the first seen."""
    chosen: dict[str, ExtractedEntity] = {}
    for entity in entities:
        current = chosen.get(entity.entity_id)
        if current is None or (current.kind != PROPER and entity.kind == PROPER):
            chosen[entity.entity_id] = entity
    return [Mention(chunk_id=chunk_id, entity_id=e.entity_id, name=e.name, kind=e.kind) for e in chosen.values()]
