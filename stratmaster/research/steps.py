"""The research steps: question -> sub-questions -> evidence -> claims -> grades -> brief -> checks.

Each step is a function of the run's input and the earlier steps' outputs (JSON), so either
orchestrator can run it, retry it, or resume after it. Rules a reader may need:

- **plan**: candidate sub-questions come from a heuristic - the question's sentences, and
  their clauses split at ";" - sent to the router's `plan` task as context. A language
  model rewrites them its own way (one per line); the built-in `local` provider selects the
  candidates that share terms with the question. The whole question is always searched too.
- **gather**: first the pages in `options.sources` are fetched and ingested (allowlist,
  robots.txt and limits: stratmaster/research/sources.py; refusals are listed, not fatal),
  then hybrid search per question within the run's scope; hits merged by chunk, keeping the
  best score and which questions found it.
- **extract**: claims come from the gathered chunks of the `EVIDENCE_DOCUMENTS` best-ranked
  documents (a document found by several of the questions ranks higher); every sentence of
  them that shares at least `MIN_SHARED_TERMS` content terms with the questions (and is 6
  words or longer) is a candidate claim, scored
  by the IDF weight of the shared terms times its chunk's retrieval score. Near-duplicates
  (content-term Jaccard >= `DUPLICATE_JACCARD`) merge into one claim with both citations.
  Other chunks that support a claim (`rag_metrics.support`) add citations: that is how
  independent sources agreeing is seen. At most `max_claims`, at most 3 per document.
- **grade**: `high` when 3 or more documents support the claim; `moderate` when 2 do, or
  one does with a retrieval score >= `STRONG_SCORE`; `low` with one document;
  `insufficient` when its own cited text does not support it.
- **compress**: the cited chunks, compressed by the compression method to the synthesis
  budget (`options.evidence_tokens`).
- **synthesize**: the router's `synthesize` task with the compressed evidence as numbered
  items. A language model answers JSON (recommendation, rationale, risks, safer
  alternative, assumptions) citing [n]; the `local` provider selects evidence sentences,
  which become the rationale - it writes no recommendation, and the brief says so; risks
  and the safer alternative are then the claims with risk words ("risk", "decline",
  "however", ...) or alternative words ("instead", "pilot", ...), assumptions the hedged
  claims ("may", "likely", ...), all as found in the evidence.
- **verify**: every claim against its cited spans, every brief sentence against the texts
  of the claims it cites (`rag_metrics` support, threshold 0.6). Unsupported claims and
  sentences are removed from the brief and listed under `flagged`; the run ends
  `needs_review` when anything was flagged or a `research_brief` gate of
  configs/evals/thresholds.yaml fails.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from stratmaster.evals.rag_metrics import content_terms, support
from stratmaster.knowledge.chunking import sentence_spans
from stratmaster.research.schemas import Citation, Claim, DecisionBrief, ResearchRequest, Source
from stratmaster.research.workflow import Ports, RunInput, StepFailed, step

MIN_SHARED_TERMS = 2
MIN_CLAIM_WORDS = 6
DUPLICATE_JACCARD = 0.6
STRONG_SCORE = 0.8
MAX_CLAIMS_PER_DOCUMENT = 3
# Claims come from the best-ranked documents only; a document's rank is its best hit's score plus
# QUERY_AGREEMENT for every further (sub-)question that found it. Chosen on CISI queries 21-76
# (the benchmark reports queries 1-20): citation precision 0.419 with every gathered document,
# 0.469 with the best 5, 0.505 with the best 5 and agreement 0.3 (the top-10 hits' 0.457).
EVIDENCE_DOCUMENTS: int | None = 5
QUERY_AGREEMENT = 0.3
MAX_HITS = 60
LOCAL_MODEL = "local-extractive"

RISK_CUES = frozenset({"risk", "risks", "decline", "declined", "fall", "fell", "loss", "losses", "lose", "fail",
                       "failed", "failure", "threat", "cost", "costs", "problem", "problems", "difficult",
                       "however", "but", "although", "concern", "concerns", "negative", "limited", "limitation",
                       "limitations", "lack", "poor"})
ALTERNATIVE_CUES = frozenset({"alternative", "alternatives", "instead", "rather", "pilot", "trial", "option",
                              "options", "compared", "versus", "whereas"})
HEDGE_CUES = frozenset({"may", "might", "could", "assume", "assumed", "assuming", "likely", "suggest",
                        "suggests", "appear", "appears", "probably", "possibly"})
_WORD = re.compile(r"[a-z]+")
_CITE = re.compile(r"\[(\d{1,3})\]")


def _request(run: RunInput) -> ResearchRequest:
    return ResearchRequest.model_validate(run.request)


def _answer(completion: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(content, model, ledger call id) of an OpenAI-shaped completion with a routing block."""
    try:
        content = completion["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        raise StepFailed("the router answered without a message") from None
    routing = completion.get("routing") or {}
    return content, str(completion.get("model") or routing.get("model") or ""), routing.get("call_id")


# --- plan ------------------------------------------------------------------------------------
def candidate_subquestions(question: str, limit: int) -> list[str]:
    """The heuristic: the question's sentences, split into clauses at ';', in order, deduplicated."""
    found: list[str] = []
    for start, end in sentence_spans(question, 0, len(question)):
        for clause in question[start:end].split(";"):
            clause = clause.strip(" \n\t,.")
            if len(clause.split()) >= 3 and clause.lower() not in (f.lower() for f in found):
                found.append(clause if clause.endswith("?") else clause + "?")
    return found[:limit]


@step("plan")
def plan(run: RunInput, outputs: Mapping[str, dict[str, Any]], ports: Ports) -> dict[str, Any]:
    request = _request(run)
    limit = request.max_subquestions()
    candidates = candidate_subquestions(request.question, limit)
    messages = [
        {"role": "system", "content": "Candidate sub-questions:\n" + "\n".join(candidates)},
        {"role": "user", "content": f"List at most {limit} sub-questions, one per line, that together answer "
                                    f"this question. {request.question}"},
    ]
    content, model, call_id = _answer(ports.complete(run.tenant, "plan", messages))
    if model == LOCAL_MODEL:
        chosen = [c for c in candidates if c.rstrip("?") in content] or candidates
    else:
        lines = [re.sub(r"^\s*(?:[-*]|\d+[.)])\s*", "", line).strip() for line in content.splitlines()]
        chosen = [line for line in lines if len(line.split()) >= 3] or candidates
    subquestions = [q for q in dict.fromkeys(chosen[:limit]) if q.strip().lower() != request.question.lower()]
    return {"subquestions": subquestions, "model": model, "call_id": call_id,
            "heuristic_candidates": candidates}


# --- gather ----------------------------------------------------------------------------------
@step("gather")
def gather(run: RunInput, outputs: Mapping[str, dict[str, Any]], ports: Ports) -> dict[str, Any]:
    request = _request(run)
    fetched = ports.fetch_sources(run.tenant, request.options.sources) if request.options.sources else []
    queries = [request.question, *outputs["plan"]["subquestions"]]
    filters = request.scope.model_dump(exclude_none=True) or None
    if filters and filters.get("document_ids") is not None:  # fetched pages join a scope that names documents
        filters["document_ids"] = [*filters["document_ids"],
                                   *(r["document_id"] for r in fetched if r.get("status") == "ingested")]
    merged: dict[str, dict[str, Any]] = {}
    for query in queries:
        for hit in ports.search(run.tenant, query, k=request.options.hits_per_question, filters=filters):
            kept = merged.get(hit["chunk_id"])
            if kept is None:
                merged[hit["chunk_id"]] = {**hit, "queries": [query]}
            else:
                kept["score"] = max(kept["score"], hit["score"])
                kept["queries"].append(query)
    hits = sorted(merged.values(), key=lambda h: (-h["score"], h["chunk_id"]))[:MAX_HITS]
    return {"queries": queries, "hits": hits, "sources": fetched}


# --- extract ---------------------------------------------------------------------------------
def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def _citation(hit: Mapping[str, Any], start: int, end: int) -> dict[str, Any]:
    """A span of the chunk (offsets in the chunk's text; `chunk_start` turns them into the document's)."""
    return Citation(document_id=hit["document_id"], chunk_id=hit["chunk_id"], start=start, end=end).model_dump()


@step("extract")
def extract(run: RunInput, outputs: Mapping[str, dict[str, Any]], ports: Ports) -> dict[str, Any]:
    request = _request(run)
    hits = _evidence_hits(outputs["gather"]["hits"])
    question_terms = content_terms(" ".join(outputs["gather"]["queries"]))
    candidates: list[dict[str, Any]] = []
    for hit in hits:
        text = hit["text"]
        for start, end in sentence_spans(text, 0, len(text)):
            sentence = text[start:end]
            terms = content_terms(sentence)
            shared = terms & question_terms
            if len(shared) < min(MIN_SHARED_TERMS, len(question_terms)) or len(sentence.split()) < MIN_CLAIM_WORDS:
                continue
            candidates.append({"text": sentence, "terms": terms, "shared": shared, "hit": hit,
                               "start": start, "end": end})
    if not candidates:
        return {"claims": [], "considered": 0}
    df = Counter(t for c in candidates for t in c["terms"])
    n = len(candidates)
    for c in candidates:
        c["score"] = sum(math.log(1 + n / df[t]) for t in c["shared"]) * c["hit"]["score"]
    candidates.sort(key=lambda c: (-c["score"], c["hit"]["chunk_id"], c["start"]))
    claims: list[dict[str, Any]] = []
    per_document: Counter[str] = Counter()
    for c in candidates:
        duplicate = next((k for k in claims if _jaccard(k["terms"], c["terms"]) >= DUPLICATE_JACCARD), None)
        if duplicate is not None:
            if all(cit["chunk_id"] != c["hit"]["chunk_id"] for cit in duplicate["citations"]):
                duplicate["citations"].append(_citation(c["hit"], c["start"], c["end"]))
            continue
        if len(claims) >= request.options.max_claims or per_document[c["hit"]["document_id"]] >= \
                MAX_CLAIMS_PER_DOCUMENT:
            continue
        per_document[c["hit"]["document_id"]] += 1
        claims.append({"text": c["text"], "terms": c["terms"], "score": c["score"],
                       "citations": [_citation(c["hit"], c["start"], c["end"])]})
    _corroborate(claims, hits)
    return {"claims": [Claim(id=f"c{i + 1}", text=k["text"], citations=[Citation(**x) for x in k["citations"]])
                       .model_dump() | {"score": round(k["score"], 6)} for i, k in enumerate(claims)],
            "considered": len(candidates)}


def _evidence_hits(hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The hits of the best-ranked documents: a document's rank score is its best hit's score plus
    QUERY_AGREEMENT for every further question that found it."""
    if EVIDENCE_DOCUMENTS is None:
        return hits
    rank: dict[str, float] = {}
    for hit in hits:
        value = hit["score"] + QUERY_AGREEMENT * (len(set(hit.get("queries", []))) - 1)
        rank[hit["document_id"]] = max(rank.get(hit["document_id"], 0.0), value)
    best = set(sorted(rank, key=lambda d: (-rank[d], d))[:EVIDENCE_DOCUMENTS])
    return [hit for hit in hits if hit["document_id"] in best]


def _corroborate(claims: list[dict[str, Any]], hits: list[dict[str, Any]]) -> None:
    """Add a citation from every other document whose chunk supports the claim."""
    for claim in claims:
        cited_documents = {c["document_id"] for c in claim["citations"]}
        for hit in hits:
            if hit["document_id"] in cited_documents:
                continue
            found = support(claim["text"], {hit["chunk_id"]: hit["text"]})
            if not found.supported:
                continue
            spans = sentence_spans(hit["text"], 0, len(hit["text"]))
            best = max(spans, key=lambda s: len(content_terms(hit["text"][s[0]:s[1]]) & claim["terms"]))
            claim["citations"].append(_citation(hit, *best))
            cited_documents.add(hit["document_id"])


# --- grade -----------------------------------------------------------------------------------
def _chunk_texts(outputs: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {hit["chunk_id"]: hit for hit in outputs["gather"]["hits"]}


def grade_claim(claim: Mapping[str, Any], chunks: Mapping[str, Mapping[str, Any]]) -> tuple[str, str]:
    """The documented rule (module docstring): (grade, why)."""
    first = claim["citations"][0]
    own = chunks.get(first["chunk_id"])
    if own is None or not support(claim["text"], {first["chunk_id"]: own["text"][first["start"]:first["end"]]}) \
            .supported:
        return "insufficient", "its own cited text does not support it"
    documents = {c["document_id"] for c in claim["citations"]}
    best = max((chunks[c["chunk_id"]]["score"] for c in claim["citations"] if c["chunk_id"] in chunks), default=0.0)
    if len(documents) >= 3:
        return "high", f"{len(documents)} independent documents support it"
    if len(documents) == 2:
        return "moderate", "2 independent documents support it"
    if best >= STRONG_SCORE:
        return "moderate", f"1 document, retrieved with score {best:.2f} (>= {STRONG_SCORE})"
    return "low", f"1 document, retrieved with score {best:.2f}"


@step("grade")
def grade(run: RunInput, outputs: Mapping[str, dict[str, Any]], ports: Ports) -> dict[str, Any]:
    chunks = _chunk_texts(outputs)
    graded = []
    for claim in outputs["extract"]["claims"]:
        level, why = grade_claim(claim, chunks)
        graded.append({**claim, "grade": level, "grade_reason": why})
    return {"claims": graded, "grades": dict(Counter(c["grade"] for c in graded))}


# --- compress --------------------------------------------------------------------------------
@step("compress")
def compress(run: RunInput, outputs: Mapping[str, dict[str, Any]], ports: Ports) -> dict[str, Any]:
    request = _request(run)
    chunks = _chunk_texts(outputs)
    ordered = list(dict.fromkeys(c["chunk_id"] for claim in outputs["grade"]["claims"] for c in claim["citations"]))
    if not ordered:
        return {"chunks": [], "tokens_before": 0, "tokens_after": 0}
    answer = ports.compress(run.tenant, request.question, [{"id": cid, "text": chunks[cid]["text"]} for cid in ordered],
                            request.options.evidence_tokens)
    return {"chunks": [{"id": c["id"], "text": c["text"]} for c in answer["chunks"]],
            "tokens_before": answer["tokens_before"], "tokens_after": answer["tokens_after"]}


# --- synthesize ------------------------------------------------------------------------------
SYNTHESIS_INSTRUCTIONS = (
    "You write decision briefs. Use only the numbered evidence. Answer with one JSON object with the keys "
    "recommendation, rationale, risks, safer_alternative (each a list of sentences, every sentence ending with "
    "the [n] numbers of the evidence it rests on) and assumptions (a list of sentences).")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _sentences_with_citations(texts: list[str], claim_sources: Mapping[int, list[int]]) -> list[dict[str, Any]]:
    """[n] markers (evidence numbers) -> the brief's source numbers; markers removed from the text."""
    found = []
    for text in texts:
        numbers = [int(n) for n in _CITE.findall(text)]
        sources = sorted({s for n in numbers for s in claim_sources.get(n, [])})
        clean = _CITE.sub("", text).replace(" .", ".").strip()
        if clean:
            found.append({"text": clean, "citations": sources, "evidence": [n for n in numbers if n in claim_sources]})
    return found


@step("synthesize")
def synthesize(run: RunInput, outputs: Mapping[str, dict[str, Any]], ports: Ports) -> dict[str, Any]:
    request = _request(run)
    chunks = _chunk_texts(outputs)
    claims = [c for c in outputs["grade"]["claims"] if c["grade"] != "insufficient"]
    sources: dict[str, int] = {}
    for claim in claims:
        for citation in claim["citations"]:
            sources.setdefault(citation["document_id"], len(sources) + 1)
    claim_sources = {i + 1: sorted({sources[c["document_id"]] for c in claim["citations"]})
                     for i, claim in enumerate(claims)}
    evidence = "\n".join(f"[{i + 1}] {claim['text']}" for i, claim in enumerate(claims))
    compressed = "\n".join(c["text"] for c in outputs["compress"]["chunks"])
    content, model, call_id = "", "", None
    if claims:
        messages = [{"role": "system", "content": f"{SYNTHESIS_INSTRUCTIONS}\n\nEvidence:\n{evidence}"},
                    {"role": "user", "content": f"Context (compressed): {compressed}\n\nQuestion: {request.question}"}]
        content, model, call_id = _answer(ports.complete(run.tenant, "synthesize", messages))
    notes: list[str] = []
    parsed = _parse_json(content) if model != LOCAL_MODEL else None
    if parsed is not None:
        sections = {key: _sentences_with_citations([str(s) for s in parsed.get(key, []) if s], claim_sources)
                    for key in ("recommendation", "rationale", "risks", "safer_alternative")}
        assumptions = [str(s) for s in parsed.get("assumptions", []) if s]
    else:
        picked = [line for line in evidence.splitlines() if _CITE.sub("", line).strip()[:60] in content] \
            if model == LOCAL_MODEL else []
        rationale = _sentences_with_citations(picked or evidence.splitlines()[:3], claim_sources)
        every = _sentences_with_citations([f"{c['text']} [{i + 1}]" for i, c in enumerate(claims)], claim_sources)
        sections = {"recommendation": [], "rationale": rationale,
                    "risks": [s for s in every if _words(s["text"]) & RISK_CUES][:3],
                    "safer_alternative": [s for s in every if _words(s["text"]) & ALTERNATIVE_CUES][:2]}
        assumptions = [c["text"] for c in claims if _words(c["text"]) & HEDGE_CUES][:3]
        if claims:
            notes.append(f"Written by {model or 'no model'}: the evidence most relevant to the question, selected "
                         "and ordered; no recommendation, since this provider selects text and writes none."
                         if model == LOCAL_MODEL else "The model's answer was not the JSON asked for; the "
                         "brief lists the evidence instead.")
    if not claims:
        notes.append("No claim in scope answers the question.")
    weights = {"high": 1.0, "moderate": 0.67, "low": 0.33, "insufficient": 0.0}
    confidence = (sum(weights[c["grade"]] for c in claims) / len(claims)) * min(1.0, len(claims) / 3) \
        if claims else 0.0
    label = "high" if confidence >= 0.75 else "moderate" if confidence >= 0.5 else "low" if confidence >= 0.25 \
        else "insufficient"
    source_list = []
    for document_id, number in sources.items():
        hit = next(chunks[c["chunk_id"]] for claim in claims for c in claim["citations"]
                   if c["document_id"] == document_id)
        link = hit.get("source") if isinstance(hit.get("source"), str) and "://" in hit.get("source", "") else None
        source_list.append(Source(number=number, document_id=document_id, title=hit.get("title") or document_id,
                                  link=link).model_dump())
    brief = {"question": request.question, **sections, "assumptions": assumptions,
             "claims": [{k: v for k, v in c.items() if k != "score"} for c in claims],
             "confidence": round(confidence, 3), "confidence_label": label, "sources": source_list,
             "generated_by": model or "none", "notes": notes}
    return {"brief": brief, "claim_sources": {str(k): v for k, v in claim_sources.items()}, "call_id": call_id}


def _parse_json(content: str) -> dict[str, Any] | None:
    start, end = content.find("{"), content.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(content[start:end + 1])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# --- verify ----------------------------------------------------------------------------------
def _cited_text(claim: Mapping[str, Any], chunks: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    return {f"{c['chunk_id']}@{c['start']}": chunks[c["chunk_id"]]["text"][c["start"]:c["end"]]
            for c in claim["citations"] if c["chunk_id"] in chunks}


@step("verify")
def verify(run: RunInput, outputs: Mapping[str, dict[str, Any]], ports: Ports) -> dict[str, Any]:
    from stratmaster.evals.gates import evaluate_gates, load_thresholds

    chunks = _chunk_texts(outputs)
    brief = json.loads(json.dumps(outputs["synthesize"]["brief"]))
    flagged: list[dict[str, Any]] = []
    kept_claims, evidence_texts = [], {}
    for number, claim in enumerate(brief["claims"], start=1):
        checked = support(claim["text"], _cited_text(claim, chunks))
        claim["support"] = round(checked.score, 4)
        evidence_texts[number] = {f"{c['chunk_id']}": chunks[c["chunk_id"]]["text"]
                                  for c in claim["citations"] if c["chunk_id"] in chunks}
        if checked.supported:
            kept_claims.append(claim)
        else:
            flagged.append({"kind": "claim", "id": claim["id"], "text": claim["text"],
                            "support": claim["support"], "reason": "its cited text does not support it"})
    brief["claims"] = kept_claims
    sentences = total = 0
    for section in ("recommendation", "rationale", "risks", "safer_alternative"):
        kept = []
        for sentence in brief[section]:
            total += 1
            cited = {k: v for n in sentence.get("evidence", []) for k, v in evidence_texts.get(n, {}).items()}
            checked = support(sentence["text"], cited) if cited else None
            sentence["support"] = round(checked.score, 4) if checked else 0.0
            sentence["supported"] = bool(checked and checked.supported)
            if sentence["supported"]:
                kept.append(sentence)
                sentences += 1
            else:
                flagged.append({"kind": "sentence", "section": section, "text": sentence["text"],
                                "support": sentence["support"],
                                "reason": "no citation" if not cited else "its cited evidence does not support it"})
        brief[section] = [{k: v for k, v in s.items() if k != "evidence"} for s in kept]
    brief["flagged"] = flagged
    metrics = {"kind": "research_brief", "claims": len(kept_claims), "claims_flagged": sum(
        f["kind"] == "claim" for f in flagged), "sentences": total, "sentences_supported": sentences,
        "faithfulness": round(sentences / total, 4) if total else None,
        "claims_with_citations": sum(bool(c["citations"]) for c in kept_claims)}
    reasons = [f"{f['kind']} removed: {f['text'][:120]!r} ({f['reason']})" for f in flagged]
    gates = load_thresholds().get("research_brief", ())
    for result in evaluate_gates(gates, metrics):
        if result.failed:
            reasons.append(f"gate {result.gate.name}: {result.detail}")
    DecisionBrief.model_validate(brief)  # the shape clients read; a mistake here is a bug, not data
    return {"brief": brief, "metrics": metrics, "review_reasons": reasons}
