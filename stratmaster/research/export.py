"""A decision brief as Markdown: sections, graded claims with quotes, numbered sources that resolve."""

from __future__ import annotations

from typing import Any


def _cite(numbers: list[int]) -> str:
    return "".join(f"[{n}]" for n in numbers)


def _sentences(items: list[dict[str, Any]]) -> list[str]:
    return [f"- {item['text']} {_cite(item.get('citations', []))}".rstrip() for item in items]


def brief_markdown(brief: dict[str, Any], status: str, reasons: list[str] | None = None) -> str:
    sources = {s["document_id"]: s["number"] for s in brief["sources"]}
    lines = [f"# Decision brief: {brief['question']}", ""]
    if status == "needs_review":
        lines += ["> **Needs review.** " + "; ".join(reasons or []), ""]
    lines += [f"*Confidence: {brief['confidence_label']} ({brief['confidence']:.2f}). "
              f"Written by {brief['generated_by']}.*", ""]
    for note in brief.get("notes", []):
        lines += [f"> {note}", ""]
    for title, key in (("Recommendation", "recommendation"), ("Rationale", "rationale"), ("Risks", "risks"),
                       ("Safer alternative", "safer_alternative")):
        lines += [f"## {title}", ""]
        lines += _sentences(brief[key]) or ["- (none in the evidence)"]
        lines.append("")
    lines += ["## Assumptions", ""]
    lines += [f"- {a}" for a in brief["assumptions"]] or ["- (none stated in the evidence)"]
    lines += ["", "## Claims", "", "| # | Claim | Grade | Sources |", "|---|---|---|---|"]
    for claim in brief["claims"]:
        cited = sorted({sources[c["document_id"]] for c in claim["citations"] if c["document_id"] in sources})
        text = claim["text"].replace("|", "\\|")
        lines.append(f"| {claim['id']} | {text} | {claim['grade']} ({claim.get('grade_reason', '')}) | "
                     f"{_cite(cited)} |")
    if brief.get("flagged"):
        lines += ["", "## Removed by verification", ""]
        lines += [f"- {f['kind']}: {f['text']} ({f['reason']})" for f in brief["flagged"]]
    lines += ["", "## Sources", ""]
    for source in brief["sources"]:
        title = source["title"].replace("]", "\\]")
        label = f"[{title}]({source['link']})" if source.get("link") else title
        lines.append(f"{source['number']}. {label} (document `{source['document_id']}`)")
    return "\n".join(lines) + "\n"
