"""A research run as a fixed sequence of steps, each a pure function of what came before.

Both orchestrators run exactly these definitions: the embedded runner (in the research
service, step outputs persisted in the database, unfinished runs resumed on start) and
Temporal (`TEMPORAL_ADDRESS`; each step an activity, retried on its own, its output saved in
the database - the workflow history keeps a small summary, under Temporal's payload limit).
A step takes the run's input, the outputs of the steps before it and the ports to the other
services, and returns a JSON-serialisable dict;
it must be safe to run again after a crash (the ports' writes are idempotent: ingestion by
document id, ledger rows by call).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

STEPS: tuple[str, ...] = ("plan", "gather", "extract", "grade", "compress", "synthesize", "verify")

# Run states: queued -> running -> complete | needs_review | failed | cancelled.
TERMINAL_STATES = frozenset({"complete", "needs_review", "failed", "cancelled"})


class StepFailed(Exception):
    """A step could not finish. `retryable`: a later attempt may succeed (a service was down)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class RunInput:
    run_id: str
    tenant: str
    request: dict[str, Any]  # ResearchRequest.model_dump(mode="json")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunInput:
        return cls(str(data["run_id"]), str(data["tenant"]), dict(data["request"]))


class Ports(Protocol):
    """What steps need of the other services, for one tenant at a time."""

    def search(self, tenant: str, query: str, *, k: int, filters: dict[str, Any] | None) -> list[dict[str, Any]]:
        """Hybrid search hits: chunk_id, document_id, title, text, score, source."""
        ...

    def complete(self, tenant: str, task: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        """An OpenAI-shaped chat completion routed by the router (with its `routing` block)."""
        ...

    def compress(self, tenant: str, query: str, chunks: list[dict[str, str]], target_tokens: int) -> dict[str, Any]:
        """The compression service's answer for these chunks."""
        ...

    def fetch_sources(self, tenant: str, urls: list[str]) -> list[dict[str, Any]]:
        """Fetch pages on the tenant's allowlist and ingest them; a result per URL (ingested or why not)."""
        ...


StepFunction = Callable[[RunInput, Mapping[str, dict[str, Any]], Ports], dict[str, Any]]
_REGISTRY: dict[str, StepFunction] = {}


def step(name: str) -> Callable[[StepFunction], StepFunction]:
    """Register the function that runs step `name` (stratmaster/research/steps.py does, on import)."""
    if name not in STEPS:
        raise ValueError(f"unknown step {name!r}; steps are {STEPS}")

    def register(function: StepFunction) -> StepFunction:
        _REGISTRY[name] = function
        return function
    return register


def execute_step(name: str, run: RunInput, outputs: Mapping[str, dict[str, Any]], ports: Ports,
                 registry: Mapping[str, StepFunction] | None = None) -> dict[str, Any]:
    """Run one step; `outputs` holds every earlier step's output by name. Raises StepFailed."""
    if registry is None:
        import stratmaster.research.steps  # noqa: F401 - registers the real steps

        registry = _REGISTRY
    missing = [earlier for earlier in STEPS[:STEPS.index(name)] if earlier not in outputs]
    if missing:
        raise StepFailed(f"step {name!r} needs the outputs of {missing}", retryable=False)
    return registry[name](run, outputs, ports)


def outcome(outputs: Mapping[str, dict[str, Any]]) -> tuple[str, list[str]]:
    """A finished run's state and why: `needs_review` when verification found reasons, else `complete`."""
    reasons = list(outputs.get("verify", {}).get("review_reasons", []))
    return ("needs_review" if reasons else "complete"), reasons
