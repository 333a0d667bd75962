"""Okapi BM25 over one tenant's chunks, in memory: the scorer behind the embedded keyword index.

Why in memory: SQLite FTS5's bm25() walks every query phrase for every matching row; CISI
questions have ~40 terms that match ~1,300 of 1,600 chunks, and scoring took 5 of a
search's 6.5 ms. Here each term's postings are numpy arrays and a query costs one
vectorised pass per distinct term (~0.5 ms for the same search).

Statistics are the tenant's own: N (chunks), n(t) (chunks containing t) and the average
length cover this tenant only, so one tenant's documents never move another's scores.

    idf(t)    = ln((N - n(t) + 0.5) / (n(t) + 0.5)), floored at 1e-6 (terms in half the
                chunks or more still count a little, as in FTS5)
    score(D)  = sum over query terms t (repeats count again) of
                idf(t) * f(t, D) * (k1 + 1) / (f(t, D) + k1 * (1 - b + b * |D| / avgdl))

with |D| the chunk's number of terms, k1 = 1.2, b = 0.75. Ties rank by chunk id.

Removal leaves a tombstone in the postings (their arrays are rebuilt lazily, per term);
when tombstones outnumber live chunks the postings are compacted. Not thread-safe: the
owner serialises calls.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

K1 = 1.2
B = 0.75
IDF_FLOOR = 1e-6


@dataclass(frozen=True, slots=True)
class Bm25Hit:
    chunk_id: str
    document_id: str
    score: float


class Bm25Scorer:
    def __init__(self, k1: float = K1, b: float = B) -> None:
        self.k1, self.b = k1, b
        self._slot_of: dict[str, int] = {}
        self._chunk: list[str] = []
        self._document: list[str] = []
        self._terms: list[tuple[np.ndarray, np.ndarray]] = []  # per slot: term ids, frequencies
        self._length = np.zeros(0, dtype=np.float64)
        self._alive = np.zeros(0, dtype=bool)
        self._slots_of_document: dict[str, set[int]] = {}
        self._vocabulary: dict[str, int] = {}
        self._document_frequency: list[int] = []
        self._posting_slots: list[list[int]] = []
        self._posting_tf: list[list[int]] = []
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._total_length = 0
        self._tombstones = 0

    def __len__(self) -> int:
        return len(self._slot_of)

    # --- writes -------------------------------------------------------------------------
    def add(self, chunk_id: str, document_id: str, terms: Iterable[str]) -> None:
        """Index a chunk; a chunk id already present is replaced."""
        self.remove(chunk_id)
        counts = Counter(terms)
        slot = len(self._chunk)
        self._grow(slot + 1)
        ids = np.fromiter((self._term_id(term) for term in counts), dtype=np.int64, count=len(counts))
        frequencies = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))
        for term_id, frequency in zip(ids.tolist(), frequencies.tolist(), strict=True):
            self._posting_slots[term_id].append(slot)
            self._posting_tf[term_id].append(frequency)
            self._document_frequency[term_id] += 1
            self._arrays.pop(term_id, None)
        length = int(frequencies.sum())
        self._chunk.append(chunk_id)
        self._document.append(document_id)
        self._terms.append((ids, frequencies))
        self._length[slot] = length
        self._alive[slot] = True
        self._slot_of[chunk_id] = slot
        self._slots_of_document.setdefault(document_id, set()).add(slot)
        self._total_length += length

    def remove(self, chunk_id: str) -> bool:
        slot = self._slot_of.pop(chunk_id, None)
        if slot is None:
            return False
        self._alive[slot] = False
        ids, _ = self._terms[slot]
        for term_id in ids.tolist():
            self._document_frequency[term_id] -= 1
        self._total_length -= int(self._length[slot])
        document = self._document[slot]
        slots = self._slots_of_document[document]
        slots.discard(slot)
        if not slots:
            del self._slots_of_document[document]
        self._tombstones += 1
        if self._tombstones > max(1024, len(self._slot_of)):
            self._compact()
        return True

    def remove_document(self, document_id: str) -> int:
        chunks = [self._chunk[slot] for slot in sorted(self._slots_of_document.get(document_id, ()))]
        for chunk_id in chunks:
            self.remove(chunk_id)
        return len(chunks)

    # --- reads --------------------------------------------------------------------------
    def search(self, query_terms: Sequence[str], k: int,
               document_ids: Iterable[str] | None = None) -> list[Bm25Hit]:
        """The best `k` chunks for the terms (repeats count again), optionally within documents."""
        live = len(self._slot_of)
        if live == 0 or k < 1:
            return []
        average_length = self._total_length / live
        scores = np.zeros(len(self._chunk), dtype=np.float64)
        matched = np.zeros(len(self._chunk), dtype=bool)
        for term, repeats in Counter(query_terms).items():
            term_id = self._vocabulary.get(term)
            if term_id is None or self._document_frequency[term_id] == 0:
                continue
            n = self._document_frequency[term_id]
            idf = max(math.log((live - n + 0.5) / (n + 0.5)), IDF_FLOOR)
            slots, tf = self._postings(term_id)
            norm = self.k1 * (1 - self.b + self.b * self._length[slots] / average_length)
            scores[slots] += repeats * idf * tf * (self.k1 + 1) / (tf + norm)
            matched[slots] = True
        matched &= self._alive[:len(matched)]
        if document_ids is not None:
            allowed = np.zeros(len(self._chunk), dtype=bool)
            for document in set(document_ids):
                allowed[list(self._slots_of_document.get(document, ()))] = True
            matched &= allowed
        candidates = np.flatnonzero(matched)
        if len(candidates) > k:
            # Everything scoring at least the k-th best, so ties at the cut are broken by id.
            kth = np.partition(scores[candidates], len(candidates) - k)[len(candidates) - k]
            candidates = candidates[scores[candidates] >= kth]
        ranked = sorted(candidates.tolist(), key=lambda slot: (-scores[slot], self._chunk[slot]))[:k]
        return [Bm25Hit(self._chunk[slot], self._document[slot], float(scores[slot])) for slot in ranked]

    def document_of(self, chunk_id: str) -> str | None:
        slot = self._slot_of.get(chunk_id)
        return None if slot is None else self._document[slot]

    # --- internals ----------------------------------------------------------------------
    def _term_id(self, term: str) -> int:
        term_id = self._vocabulary.get(term)
        if term_id is None:
            term_id = self._vocabulary[term] = len(self._document_frequency)
            self._document_frequency.append(0)
            self._posting_slots.append([])
            self._posting_tf.append([])
        return term_id

    def _postings(self, term_id: int) -> tuple[np.ndarray, np.ndarray]:
        arrays = self._arrays.get(term_id)
        if arrays is None:
            arrays = self._arrays[term_id] = (np.asarray(self._posting_slots[term_id], dtype=np.int64),
                                              np.asarray(self._posting_tf[term_id], dtype=np.float64))
        return arrays

    def _grow(self, size: int) -> None:
        if size <= len(self._length):
            return
        capacity = max(size, 2 * len(self._length), 64)
        self._length = np.concatenate([self._length, np.zeros(capacity - len(self._length))])
        self._alive = np.concatenate([self._alive, np.zeros(capacity - len(self._alive), dtype=bool)])

    def _compact(self) -> None:
        """Rebuild without tombstones: slots, postings and the vocabulary of live chunks only."""
        live = [(self._chunk[slot], self._document[slot], self._terms[slot])
                for slot in sorted(self._slot_of.values())]
        vocabulary = {term_id: term for term, term_id in self._vocabulary.items()}
        fresh = Bm25Scorer(self.k1, self.b)
        for chunk_id, document_id, (ids, frequencies) in live:
            fresh.add(chunk_id, document_id, (vocabulary[term_id] for term_id, frequency
                                              in zip(ids.tolist(), frequencies.tolist(), strict=True)
                                              for _ in range(frequency)))
        self.__dict__.update(fresh.__dict__)
