"""Themes of a tenant's knowledge graph: Louvain communities with extractive summaries.

`detect_communities` partitions the co-occurrence graph (`GraphStore.edges`) with
networkx's `louvain_communities`, deterministic for a given seed. Communities smaller
than `min_size` (default 2: singletons) are dropped, because one entity on its own is not
a theme; every entity of an edge belongs to some community, so only Louvain's rare
one-member groups go.

`summarise_community` is extractive: it splits the community's chunk texts into
sentences, scores each by the summed weight of the community's entities it mentions
(weight = weighted degree inside the community, so central entities count more),
takes the best `max_sentences` (ties: earlier first), drops duplicates and returns them
in their original order. An entity is "mentioned" when its slug (`entity_slug`: case,
plural and "&"/"and" folded) occurs as whole words in the sentence's slug. A summary is
empty when no sentence mentions any of the entities: it never invents text.

`build_communities` ties both together into `Community` records for
`GraphStore.replace_communities`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

import networkx as nx

from stratmaster.knowledge.entities import entity_slug
from stratmaster.stores.protocols import Community

DEFAULT_SEED = 42
DEFAULT_TOP_ENTITIES = 5
MIN_SENTENCE_WORDS = 4

# A break after ".", "!" or "?" (optionally followed by a closing quote or bracket) and
# before what looks like the start of a sentence, or at a blank line.
_SENTENCE_BREAK = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"')\]”’]))\s+(?=[\"'(\[“‘]?[A-Z0-9])|\n\s*\n"
)


def _graph(edges: Iterable[tuple[str, str, float]]) -> nx.Graph:
    weights: dict[tuple[str, str], float] = defaultdict(float)
    for a, b, weight in edges:
        if a == b or weight <= 0:
            continue
        weights[(a, b) if a < b else (b, a)] += float(weight)
    graph = nx.Graph()
    # Sorted insertion: Louvain visits nodes in graph order, so the same edges in any
    # order give the same communities for a seed.
    for (a, b), weight in sorted(weights.items()):
        graph.add_edge(a, b, weight=weight)
    return graph


def detect_communities(edges: Iterable[tuple[str, str, float]], seed: int = DEFAULT_SEED,
                       resolution: float = 1.0, min_size: int = 2) -> list[list[str]]:
    """Louvain communities of the weighted co-occurrence graph, largest first.

    Members are sorted; communities of equal size are ordered by their first member.
    Higher `resolution` gives more, smaller communities.
    """
    graph = _graph(edges)
    if graph.number_of_nodes() == 0:
        return []
    found = nx.community.louvain_communities(graph, weight="weight", resolution=resolution, seed=seed)
    communities = [sorted(members) for members in found if len(members) >= min_size]
    communities.sort(key=lambda members: (-len(members), members[0]))
    return communities


def weighted_degrees(edges: Iterable[tuple[str, str, float]], members: Iterable[str]) -> dict[str, float]:
    """Each member's summed edge weight to other members (its centrality inside the community)."""
    inside = set(members)
    degree = {member: 0.0 for member in inside}
    for a, b, weight in edges:
        if a in inside and b in inside and a != b:
            degree[a] += weight
            degree[b] += weight
    return degree


def split_sentences(text: str) -> list[str]:
    """Sentences of a text, whitespace collapsed (a light splitter: ". " before a capital)."""
    sentences = []
    for part in _SENTENCE_BREAK.split(text):
        sentence = " ".join(part.split())
        if sentence:
            sentences.append(sentence)
    return sentences


def summarise_community(entity_names: Sequence[str], chunk_texts: Sequence[str], max_sentences: int = 3,
                        weights: Mapping[str, float] | None = None) -> str:
    """The `max_sentences` sentences of `chunk_texts` that best cover `entity_names`, in text order.

    `weights` maps a name to its importance (its weighted degree); names without a weight,
    or all of them when `weights` is None, count 1.
    """
    if max_sentences < 1:
        return ""
    targets: dict[str, float] = {}
    for name in entity_names:
        slug = entity_slug(name)
        if slug:
            weight = 1.0 if weights is None else float(weights.get(name, 1.0))
            targets[slug] = max(targets.get(slug, 0.0), weight)
    if not targets:
        return ""
    candidates: list[tuple[float, int, str]] = []  # (score, position, sentence)
    seen: set[str] = set()
    position = 0
    for text in chunk_texts:
        for sentence in split_sentences(text):
            position += 1
            key = sentence.casefold()
            if key in seen or len(sentence.split()) < MIN_SENTENCE_WORDS:
                continue
            seen.add(key)
            padded = f"-{entity_slug(sentence)}-"
            score = sum(weight for slug, weight in targets.items() if f"-{slug}-" in padded)
            if score > 0:
                candidates.append((score, position, sentence))
    best = sorted(candidates, key=lambda c: (-c[0], c[1]))[:max_sentences]
    return " ".join(sentence for _, _, sentence in sorted(best, key=lambda c: c[1]))


def build_communities(
    edges: Sequence[tuple[str, str, float]],
    names: Mapping[str, str],
    texts_for: Callable[[Sequence[str]], Sequence[str]],
    *,
    seed: int = DEFAULT_SEED,
    resolution: float = 1.0,
    top_k: int = DEFAULT_TOP_ENTITIES,
    max_sentences: int = 3,
) -> list[Community]:
    """Detect communities and summarise each: `Community` records numbered from 0, largest first.

    `names` maps entity ids to display names (ids missing from it are used as names);
    `texts_for(top_entity_ids)` returns the chunk texts to summarise from, e.g. the texts
    of `GraphStore.chunks_of_entities(tenant, top_entity_ids, limit)`. `top_entities`
    holds the `top_k` entity ids by weighted degree inside the community.
    """
    communities = []
    for community_id, members in enumerate(detect_communities(edges, seed=seed, resolution=resolution)):
        degree = weighted_degrees(edges, members)
        top = sorted(members, key=lambda entity_id: (-degree[entity_id], entity_id))[:max(1, top_k)]
        top_names = [names.get(entity_id, entity_id) for entity_id in top]
        weights = {names.get(entity_id, entity_id): degree[entity_id] for entity_id in top}
        summary = summarise_community(top_names, texts_for(top), max_sentences=max_sentences, weights=weights)
        communities.append(Community(community_id=community_id, entity_ids=tuple(members), summary=summary,
                                     size=len(members), top_entities=tuple(top)))
    return communities
