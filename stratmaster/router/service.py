"""Routing: which model serves a tenant's task, calling it, falling back, and accounting for it.

`Router.decide` turns (tenant, task, prompt size, temperature) into an ordered list of
candidates: the policy's primary and fallbacks, minus what the policy's constraints, a
disabled provider, a missing API key, the context window or a cooldown exclude. With
recommender v2 on, Thompson sampling over the eligible models picks the first (the rest
keep policy order); off, policy order alone decides.

`Router.complete` checks the tenant's budget (exhausted: `BudgetExhausted`, a 402), then
tries the candidates in order: a failure (after the provider's own retries) or a timeout
puts that model in cooldown for `routing.cooldown_s` and moves on to the next. Every
attempt is a ledger row; the answer's cost is added to the tenant's spend in the same
transaction. Cooldowns live in the replica's memory (each replica learns on its own).
`Router.open_stream` does the same for a streamed answer: a model that fails before its
first delta is fallen back from; once deltas flow the answer is that model's, and the
ledger row is written when the stream ends (or breaks, or the client leaves).

The budget is checked before a request's first call, against what has been spent: calls
already in flight when the limit is reached still complete and are charged, so a tenant can
overshoot by the cost of its concurrent calls (a soft limit, as LiteLLM's budgets are).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stratmaster.router.bandit import ArmState, ThompsonRecommender, reward
from stratmaster.router.catalogue import Catalogue, ModelEntry, ProviderEntry
from stratmaster.router.providers import (
    ChatCall,
    ChatProvider,
    LocalExtractiveProvider,
    OpenAICompatibleProvider,
    ProviderError,
    StreamState,
    estimate_tokens,
    prompt_tokens,
)
from stratmaster.router.repository import CallRecord, RouterRepository, new_call, period_bounds
from stratmaster.telemetry import NULL, Counter

log = logging.getLogger("stratmaster.router")

# A provider's answer about this request (too long, a parameter it rejects), not about its health:
# the next model is tried, but the model is not put in cooldown for everyone else.
REQUEST_SPECIFIC_STATUS = frozenset({400, 413, 422})


class RoutingError(Exception):
    """A request the router refuses or cannot serve; `status` is the HTTP status to answer."""

    status = 422
    code = "routing_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message, self.details = message, details


class InvalidRequest(RoutingError):
    status, code = 422, "invalid_request"


class NoEligibleModel(RoutingError):
    status, code = 422, "no_eligible_model"


class BudgetExhausted(RoutingError):
    status, code = 402, "budget_exhausted"


class AllModelsFailed(RoutingError):
    status, code = 502, "all_models_failed"


class NotFound(RoutingError):
    status, code = 404, "not_found"


class AlreadyRated(RoutingError):
    status, code = 409, "conflict"


class Cooldowns:
    """Models skipped until a moment, after they failed; per process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, tuple[float, str]] = {}

    def cool(self, model: str, seconds: float, reason: str) -> None:
        if seconds > 0:
            self._until[model] = (self._clock() + seconds, reason)

    def remaining(self, model: str) -> tuple[float, str] | None:
        found = self._until.get(model)
        if found is None:
            return None
        left = found[0] - self._clock()
        if left <= 0:
            self._until.pop(model, None)
            return None
        return left, found[1]


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    tenant: str
    period: str
    period_key: str
    limit_usd: float | None
    spent_usd: float
    period_start: datetime | None
    resets_at: datetime | None

    @property
    def remaining_usd(self) -> float | None:
        return None if self.limit_usd is None else max(self.limit_usd - self.spent_usd, 0.0)

    @property
    def exhausted(self) -> bool:
        return self.limit_usd is not None and self.spent_usd >= self.limit_usd

    def as_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "period": self.period, "period_key": self.period_key,
                "limit_usd": self.limit_usd, "spent_usd": round(self.spent_usd, 6),
                "remaining_usd": None if self.remaining_usd is None else round(self.remaining_usd, 6),
                "exhausted": self.exhausted,
                "period_start": self.period_start.isoformat() if self.period_start else None,
                "resets_at": self.resets_at.isoformat() if self.resets_at else None}

    def refusal(self) -> str:
        window = {"day": "today", "month": "this month", "total": "in total"}[self.period]
        resets = f"; it resets at {self.resets_at.isoformat()}" if self.resets_at else ""
        return (f"budget exhausted: tenant {self.tenant!r} has spent ${self.spent_usd:.4f} of its "
                f"${self.limit_usd:.2f} {window} ({self.period_key}){resets}")


@dataclass(frozen=True, slots=True)
class Decision:
    tenant: str
    task: str
    policy: str
    candidates: list[str]
    excluded: list[dict[str, str]]
    why: str
    chooser: str  # "policy", "request" or "recommender-v2"
    prompt_tokens: int
    max_tokens: int
    temperature: float | None
    temperature_capped_from: float | None = None
    recommender: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "task": self.task, "policy": self.policy,
                "model": self.candidates[0], "fallbacks": self.candidates[1:], "why": self.why,
                "chosen_by": self.chooser, "excluded": self.excluded, "prompt_tokens": self.prompt_tokens,
                "max_tokens": self.max_tokens, "temperature": self.temperature,
                "temperature_capped_from": self.temperature_capped_from, "recommender": self.recommender}


@dataclass(slots=True)
class Completion:
    call: CallRecord
    content: str
    provider_model: str
    finish_reason: str
    decision: Decision
    fallbacks_tried: list[dict[str, Any]]
    router_overhead_ms: float = 0.0
    provider_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class StreamingCompletion:
    """An answer being streamed: iterate `deltas()`; afterwards `call` is its ledger row, `error` any failure."""

    def __init__(self, router: Router, tenant: str, task: str, decision: Decision, model: str, provider: str,
                 entry: ModelEntry, attempt: int, budget: BudgetStatus, request_id: str | None,
                 attempts: list[CallRecord], tried: list[dict[str, Any]], state: StreamState, first: str | None,
                 rest: AsyncIterator[str]) -> None:
        self.router, self.tenant, self.task, self.decision = router, tenant, task, decision
        self.model, self.provider, self.entry, self.attempt = model, provider, entry, attempt
        self.budget, self.request_id, self.attempts, self.fallbacks_tried = budget, request_id, attempts, tried
        self.state, self._first, self._rest = state, first, rest
        self.call_id = str(uuid.uuid4())
        self.call: CallRecord | None = None
        self.error: dict[str, Any] | None = None

    async def deltas(self) -> AsyncIterator[str]:
        parts: list[str] = []
        outcome, failure = "ok", None
        try:
            if self._first is not None:
                parts.append(self._first)
                yield self._first
            async for delta in self._rest:
                parts.append(delta)
                yield delta
        except ProviderError as exc:
            outcome, failure = exc.outcome, exc
            self.error = {"outcome": exc.outcome, "message": exc.message}
        except (GeneratorExit, asyncio.CancelledError):
            # The client went away: charge what was produced, synchronously (nothing may be awaited here).
            self._record("client_closed", "".join(parts), None)
            raise
        await asyncio.to_thread(self._record, outcome, "".join(parts), failure)

    def _record(self, outcome: str, content: str, failure: ProviderError | None) -> None:
        tokens_in = self.state.tokens_in or self.decision.prompt_tokens
        # A stream cut short has no usage from the provider: count what was sent.
        tokens_out = (self.state.tokens_out if outcome == "ok" else None) or estimate_tokens(content)
        self.call = new_call(self.tenant, self.task, self.model, self.provider, self.attempt, outcome,
                             tokens_in=tokens_in, tokens_out=tokens_out,
                             cost_usd=self.entry.cost_usd(tokens_in, tokens_out),
                             latency_ms=self.state.latency_ms or (failure.latency_ms if failure else 0.0),
                             request_id=self.request_id, error=failure.message if failure else None,
                             call_id=self.call_id)
        if failure is not None and failure.status not in REQUEST_SPECIFIC_STATUS:
            self.router.cooldowns.cool(self.model, self.router.catalogue.routing.cooldown_s, failure.outcome)
        self.router._account(self.tenant, self.task, [*self.attempts, self.call], self.budget.period_key)
        if outcome == "ok":
            self.router._succeeded(self.task, self.model, self.attempt)
        else:
            self.router._decisions.inc(1.0, {"task": self.router._task_label(self.task), "model": self.model,
                                             "outcome": outcome})


def build_providers(catalogue: Catalogue, environ: Mapping[str, str] | None = None) -> dict[str, ChatProvider]:
    """A client per enabled provider; API keys come from the variables the catalogue names."""
    environ = os.environ if environ is None else environ
    built: dict[str, ChatProvider] = {}
    for name, entry in catalogue.providers.items():
        if not entry.enabled:
            continue
        if entry.kind == "local":
            built[name] = LocalExtractiveProvider()
        else:
            key = environ.get(entry.api_key_env) if entry.api_key_env else None
            if entry.api_key_env and not key:
                continue  # excluded at routing time, with the variable named
            built[name] = OpenAICompatibleProvider(name, entry, key)
    return built


class Router:
    def __init__(self, catalogue: Catalogue, repository: RouterRepository, providers: Mapping[str, ChatProvider], *,
                 recommender_enabled: bool = False, recommender: ThompsonRecommender | None = None,
                 cooldowns: Cooldowns | None = None, decisions: Counter = NULL,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.catalogue, self.repository, self.providers = catalogue, repository, dict(providers)
        self.recommender_enabled = recommender_enabled
        self.recommender = recommender or ThompsonRecommender()
        self.cooldowns = cooldowns or Cooldowns()
        self._decisions, self._now = decisions, now
        self._tasks = {task for tasks in catalogue.policies.values() for task in tasks}

    async def aclose(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self.providers.values()))

    # --- budgets ----------------------------------------------------------------------------
    def budget(self, tenant: str) -> BudgetStatus:
        budget = self.catalogue.budgets.for_tenant(tenant)
        key, start, end = period_bounds(budget.period, self._now())
        return BudgetStatus(tenant, budget.period, key, budget.limit_usd, self.repository.spent(tenant, key),
                            start, end)

    # --- deciding ---------------------------------------------------------------------------
    def _exclusion(self, name: str, provider_name: str, provider: ProviderEntry, entry: ModelEntry,
                   policy_constraints: Any, needed: int) -> str | None:
        c = policy_constraints
        if not provider.enabled:
            return f"provider {provider_name!r} is disabled in the catalogue"
        if provider_name not in self.providers:
            return f"provider {provider_name!r} has no API key: {provider.api_key_env} is unset"
        if provider.external and not c.allow_external:
            return "the policy keeps data in the cluster and this provider is outside it"
        if c.max_input_per_1k is not None and entry.input_per_1k > c.max_input_per_1k:
            return f"prompt price ${entry.input_per_1k}/1k is over the policy's ${c.max_input_per_1k}/1k"
        if c.max_output_per_1k is not None and entry.output_per_1k > c.max_output_per_1k:
            return f"completion price ${entry.output_per_1k}/1k is over the policy's ${c.max_output_per_1k}/1k"
        if c.min_context_window is not None and entry.context_window < c.min_context_window:
            return f"context window {entry.context_window} is under the policy's {c.min_context_window}"
        if needed > entry.context_window:
            return f"prompt plus max_tokens ({needed} tokens) exceeds its context window of {entry.context_window}"
        return None

    def decide(self, tenant: str, task: str, messages: list[dict[str, str]], max_tokens: int | None = None,
               temperature: float | None = None, model: str | None = None) -> Decision:
        policy_path, policy = self.catalogue.policy(tenant, task)
        names = policy.candidates
        if model is not None:
            if model not in self.catalogue.model_names():
                raise InvalidRequest(f"model: {model!r} is not in the catalogue; GET /router/models lists them")
            names = [model, *[n for n in names if n != model]]
        tokens_in = prompt_tokens(messages)
        max_out = max_tokens or self.catalogue.routing.default_max_tokens
        eligible: list[str] = []
        excluded: list[dict[str, str]] = []
        cooling: list[str] = []
        for name in names:
            provider_name, provider, entry = self.catalogue.model(name)
            reason = self._exclusion(name, provider_name, provider, entry, policy.constraints, tokens_in + max_out)
            if reason is not None:
                excluded.append({"model": name, "reason": reason})
                continue
            cooled = self.cooldowns.remaining(name)
            if cooled is not None:
                excluded.append({"model": name, "reason": f"cooling down for {cooled[0]:.1f} s after {cooled[1]}"})
                cooling.append(name)
                continue
            eligible.append(name)
        note = ""
        if not eligible and cooling:
            eligible, note = cooling, "; every eligible model is cooling down, so they are tried anyway"
        if not eligible:
            raise NoEligibleModel(f"no model in {policy_path} can serve this request: "
                                  + "; ".join(f"{e['model']}: {e['reason']}" for e in excluded),
                                  {"policy": policy_path, "excluded": excluded})
        if model is not None and eligible[0] != model:
            reason = next(e["reason"] for e in excluded if e["model"] == model)
            raise NoEligibleModel(f"model: {model!r} cannot serve this request under {policy_path}: {reason}",
                                  {"policy": policy_path, "excluded": excluded})
        chooser, picked = "policy", None
        if model is not None:
            chooser, why = "request", f"the request named {model!r}"
        elif self.recommender_enabled and len(eligible) > 1:
            arms = self.repository.arms(tenant, task)
            pick = self.recommender.choose(eligible, arms)
            eligible = [pick.model, *[n for n in eligible if n != pick.model]]
            chooser = "recommender-v2"
            mean = pick.state.mean
            picked = {"method": "thompson", "draw": round(pick.draw, 4), "pulls": pick.state.pulls,
                      "mean_reward": None if mean is None else round(mean, 4),
                      "arms": {n: {"pulls": s.pulls, "mean_reward": None if s.mean is None else round(s.mean, 4)}
                               for n, s in arms.items() if n in eligible}}
            why = (f"recommender v2 (Thompson sampling) drew {pick.draw:.3f} for {pick.model!r} "
                   f"({pick.state.pulls} rated calls, mean reward "
                   f"{'none yet' if mean is None else f'{mean:.3f}'}) among {len(eligible)} eligible models "
                   f"of {policy_path}")
        elif eligible[0] == policy.primary:
            why = f"primary of {policy_path}"
        else:
            position = policy.fallbacks.index(eligible[0]) + 1
            why = (f"fallback {position} of {policy_path}; skipped: "
                   + "; ".join(f"{e['model']}: {e['reason']}" for e in excluded))
        capped_from = None
        if temperature is not None and policy.constraints.max_temperature is not None \
                and temperature > policy.constraints.max_temperature:
            capped_from, temperature = temperature, policy.constraints.max_temperature
            why += f"; temperature capped at {temperature} by the policy"
        return Decision(tenant, task, policy_path, eligible, excluded, why + note, chooser, tokens_in, max_out,
                        temperature, capped_from, picked)

    # --- calling ----------------------------------------------------------------------------
    def prepare(self, tenant: str, task: str, messages: list[dict[str, str]], max_tokens: int | None = None,
                temperature: float | None = None, model: str | None = None) -> tuple[BudgetStatus, Decision]:
        """The budget check, then the decision (one trip to a worker thread for both)."""
        status = self.budget(tenant)
        if status.exhausted:
            self._decisions.inc(1.0, {"task": self._task_label(task), "model": "none", "outcome": "budget_exhausted"})
            raise BudgetExhausted(status.refusal(), status.as_dict())
        return status, self.decide(tenant, task, messages, max_tokens, temperature, model)

    def _task_label(self, task: str) -> str:
        return task if task in self._tasks else "other"

    def _deadline_passed(self, call: ChatCall, kind: str, name: str, tried: list[dict[str, Any]]) -> bool:
        """Record a skip when the deadline leaves no time for a remote model (not its fault: no row, no cooldown)."""
        remaining = call.remaining_s()
        if kind == "local" or remaining is None or remaining > 0.05:
            return False
        tried.append({"model": name, "outcome": "deadline_passed", "status_code": None, "retries": 0,
                      "latency_ms": 0.0, "error": f"the request's {self.catalogue.routing.deadline_s:g} s "
                                                  "deadline passed before this model's turn"})
        return True

    def _failed(self, tenant: str, task: str, name: str, provider_name: str, attempt: int, exc: ProviderError,
                request_id: str | None, attempts: list[CallRecord], tried: list[dict[str, Any]]) -> None:
        if exc.status not in REQUEST_SPECIFIC_STATUS:
            self.cooldowns.cool(name, self.catalogue.routing.cooldown_s, exc.outcome)
        attempts.append(new_call(tenant, task, name, provider_name, attempt, exc.outcome, status_code=exc.status,
                                 latency_ms=exc.latency_ms, request_id=request_id, error=exc.message))
        tried.append({"model": name, "outcome": exc.outcome, "status_code": exc.status, "retries": exc.retries,
                      "latency_ms": exc.latency_ms, "error": exc.message})
        self._decisions.inc(1.0, {"task": self._task_label(task), "model": name, "outcome": exc.outcome})
        log.warning("model call failed", extra={"model": name, "outcome": exc.outcome, "attempt": attempt})

    def _succeeded(self, task: str, name: str, attempt: int) -> None:
        self._decisions.inc(1.0, {"task": self._task_label(task), "model": name,
                                  "outcome": "ok" if attempt == 0 else "ok_after_fallback"})

    def _all_failed(self, decision: Decision, tried: list[dict[str, Any]]) -> AllModelsFailed:
        return AllModelsFailed(f"every model {decision.policy} allows failed: "
                               + "; ".join(f"{t['model']}: {t['outcome']}" for t in tried),
                               {"policy": decision.policy, "fallbacks_tried": tried})

    def _call_for(self, decision: Decision, messages: list[dict[str, str]], extra: dict[str, Any] | None) -> ChatCall:
        return ChatCall(messages, decision.max_tokens, decision.temperature, extra or {},
                        deadline=time.monotonic() + self.catalogue.routing.deadline_s)

    async def complete(self, tenant: str, task: str, messages: list[dict[str, str]], *,
                       max_tokens: int | None = None, temperature: float | None = None, model: str | None = None,
                       request_id: str | None = None, extra: dict[str, Any] | None = None) -> Completion:
        started = time.perf_counter()
        status, decision = await asyncio.to_thread(self.prepare, tenant, task, messages, max_tokens, temperature,
                                                    model)
        call = self._call_for(decision, messages, extra)
        attempts: list[CallRecord] = []
        tried: list[dict[str, Any]] = []
        provider_ms = 0.0
        for attempt, name in enumerate(decision.candidates):
            provider_name, provider_entry, entry = self.catalogue.model(name)
            if self._deadline_passed(call, provider_entry.kind, name, tried):
                continue
            try:
                result = await self.providers[provider_name].complete(call, entry)
            except ProviderError as exc:
                provider_ms += exc.latency_ms
                self._failed(tenant, task, name, provider_name, attempt, exc, request_id, attempts, tried)
                continue
            provider_ms += result.latency_ms
            cost = entry.cost_usd(result.tokens_in, result.tokens_out)
            record = new_call(tenant, task, name, provider_name, attempt, "ok", status_code=None,
                              tokens_in=result.tokens_in, tokens_out=result.tokens_out, cost_usd=cost,
                              latency_ms=result.latency_ms, request_id=request_id)
            attempts.append(record)
            await asyncio.to_thread(self._account, tenant, task, attempts, status.period_key)
            self._succeeded(task, name, attempt)
            overhead = (time.perf_counter() - started) * 1000 - provider_ms
            return Completion(record, result.content, result.model or name, result.finish_reason, decision, tried,
                              round(overhead, 3), round(provider_ms, 3),
                              {"retries": result.retries})
        await asyncio.to_thread(self._account, tenant, task, attempts, status.period_key)
        raise self._all_failed(decision, tried)

    async def open_stream(self, tenant: str, task: str, messages: list[dict[str, str]], *,
                          max_tokens: int | None = None, temperature: float | None = None, model: str | None = None,
                          request_id: str | None = None, extra: dict[str, Any] | None = None) -> StreamingCompletion:
        """A streamed answer from the first candidate that sends its first delta.

        Until a model's first delta arrives, its failure falls back like `complete`; once
        deltas flow, the answer is that model's, and a failure ends the stream with an error
        (its ledger row says which). Budget and decision errors raise before anything streams.
        """
        status, decision = await asyncio.to_thread(self.prepare, tenant, task, messages, max_tokens, temperature,
                                                    model)
        call = self._call_for(decision, messages, extra)
        attempts: list[CallRecord] = []
        tried: list[dict[str, Any]] = []
        for attempt, name in enumerate(decision.candidates):
            provider_name, provider_entry, entry = self.catalogue.model(name)
            if self._deadline_passed(call, provider_entry.kind, name, tried):
                continue
            state = StreamState()
            deltas = self.providers[provider_name].stream(call, entry, state)
            try:
                first = await anext(deltas, None)
            except ProviderError as exc:
                self._failed(tenant, task, name, provider_name, attempt, exc, request_id, attempts, tried)
                continue
            return StreamingCompletion(self, tenant, task, decision, name, provider_name, entry, attempt, status,
                                       request_id, attempts, tried, state, first, deltas)
        await asyncio.to_thread(self._account, tenant, task, attempts, status.period_key)
        raise self._all_failed(decision, tried)

    def _account(self, tenant: str, task: str, attempts: list[CallRecord], spend_key: str) -> None:
        self.repository.record(attempts, spend_key)
        # A failed call is a zero reward for that model's arm (kept whether or not the flag is on).
        for failed in attempts:
            if failed.outcome not in ("ok", "client_closed"):
                self.repository.reward_arm(tenant, task, failed.model, 0.0)

    # --- learning ---------------------------------------------------------------------------
    def feedback(self, tenant: str, score: float, call_id: str | None = None, task: str | None = None,
                 model: str | None = None) -> dict[str, Any]:
        """Rate a call (or, without one, a model on a task, e.g. an eval score); the arm's new state."""
        weights = self.catalogue.routing.reward
        if call_id is not None:
            call = self.repository.get(tenant, call_id)
            if call is None:
                raise NotFound(f"call_id: no call {call_id!r} for this tenant")
            if call.outcome != "ok":
                raise AlreadyRated(f"call_id: call {call_id!r} failed ({call.outcome}); it was scored 0 then")
            if not self.repository.set_quality(tenant, call_id, score):
                raise AlreadyRated(f"call_id: call {call_id!r} already has feedback")
            value = reward(weights, score, call.latency_ms, call.cost_usd)
            task, model = call.task, call.model
        else:
            if task is None or model is None:
                raise InvalidRequest("give call_id, or task and model")
            if model not in self.catalogue.model_names():
                raise InvalidRequest(f"model: {model!r} is not in the catalogue")
            value = reward(weights, score)
        arm = self.repository.reward_arm(tenant, task, model, value)
        return {"task": task, "model": model, "call_id": call_id, "reward": round(value, 6),
                "arm": {"pulls": arm.pulls, "mean_reward": round(arm.mean or 0.0, 6)},
                "recommender_enabled": self.recommender_enabled}

    def arms(self, tenant: str, task: str) -> dict[str, ArmState]:
        return self.repository.arms(tenant, task)

    # --- describing -------------------------------------------------------------------------
    def models(self, tenant: str) -> list[dict[str, Any]]:
        described = []
        for provider_name, provider in self.catalogue.providers.items():
            for entry in provider.models:
                cooled = self.cooldowns.remaining(entry.name)
                available = provider.enabled and provider_name in self.providers
                described.append({
                    "name": entry.name, "provider": provider_name, "kind": provider.kind,
                    "provider_model": entry.api_name, "input_per_1k_usd": entry.input_per_1k,
                    "output_per_1k_usd": entry.output_per_1k, "context_window": entry.context_window,
                    "data_leaves_cluster": provider.external, "available": available,
                    "cooldown_s": None if cooled is None else round(cooled[0], 1)})
        return described

    def policies(self, tenant: str) -> dict[str, Any]:
        """The policies that apply to this tenant: its own and the platform default's."""
        return {who: {task: p.model_dump() for task, p in tasks.items()}
                for who, tasks in self.catalogue.policies.items() if who in (tenant, "default")}
