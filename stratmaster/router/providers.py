"""Model providers: an OpenAI-compatible chat-completions client and the built-in `local` one.

`OpenAICompatibleProvider` speaks `POST {base_url}/chat/completions` (vLLM, Ollama, a LiteLLM
proxy, OpenAI) over httpx with a per-attempt timeout, and retries 429, 5xx and connection
errors with exponential backoff (honouring `Retry-After`, capped). A timeout is not retried:
a stalled server would multiply the wait, so the router falls back instead. A call may carry
a deadline (the request's whole budget of time): no attempt waits past it, and no retry
starts that could not finish before it.

`LocalExtractiveProvider` needs no model and no network: it answers with sentences taken
from the messages themselves, picked by their overlap with the question and kept in their
original order. It is not a language model and says so: its answers carry
`model: local-extractive`.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from stratmaster.router.catalogue import LOCAL_MODEL, ModelEntry, ProviderEntry

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class ChatCall:
    """What a provider is asked: OpenAI-shaped messages and sampling limits."""

    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    deadline: float | None = None  # time.monotonic() after which nothing more is tried

    def remaining_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


@dataclass(frozen=True, slots=True)
class ProviderResult:
    content: str
    model: str  # as the provider reports it
    tokens_in: int
    tokens_out: int
    finish_reason: str
    latency_ms: float
    retries: int = 0


@dataclass(slots=True)
class StreamState:
    """What a stream reports besides its deltas, filled in as it goes."""

    model: str = ""
    tokens_in: int | None = None
    tokens_out: int | None = None
    finish_reason: str = "stop"
    latency_ms: float = 0.0
    retries: int = 0


class ProviderError(Exception):
    """A provider call that failed after its retries; `outcome` is the ledger's word for it."""

    def __init__(self, outcome: str, message: str, status: int | None = None, retries: int = 0,
                 latency_ms: float = 0.0) -> None:
        super().__init__(message)
        self.outcome, self.message, self.status, self.retries, self.latency_ms = (
            outcome, message, status, retries, latency_ms)


class ChatProvider(Protocol):
    async def complete(self, call: ChatCall, model: ModelEntry) -> ProviderResult: ...

    def stream(self, call: ChatCall, model: ModelEntry, state: StreamState) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about four characters a token, as OpenAI's rule of thumb)."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def prompt_tokens(messages: list[dict[str, str]]) -> int:
    # ~4 tokens of framing per message, as chat formats add role markers.
    return sum(estimate_tokens(m.get("content") or "") + 4 for m in messages)


# --- OpenAI-compatible -----------------------------------------------------------------------

Sleep = Callable[[float], Awaitable[None]]


class OpenAICompatibleProvider:
    def __init__(self, name: str, entry: ProviderEntry, api_key: str | None,
                 transport: httpx.AsyncBaseTransport | None = None, sleep: Sleep = asyncio.sleep) -> None:
        assert entry.base_url is not None
        self.name, self.entry, self._sleep = name, entry, sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(entry.timeout_s, connect=min(entry.timeout_s, 5.0))
        self._client = httpx.AsyncClient(base_url=entry.base_url, headers=headers, timeout=timeout,
                                         transport=transport, trust_env=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        wait = self.entry.backoff_s * (2 ** attempt)
        if retry_after:
            try:
                wait = max(wait, float(retry_after))
            except ValueError:
                pass  # an HTTP-date: keep our own backoff
        return min(wait, self.entry.max_backoff_s)

    def _body(self, call: ChatCall, model: ModelEntry, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model.api_name, "messages": call.messages, "max_tokens": call.max_tokens,
                                "stream": stream, **call.extra}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if call.temperature is not None:
            body["temperature"] = call.temperature
        return body

    async def _send(self, call: ChatCall, body: dict[str, Any], stream: bool,
                    started: float) -> tuple[httpx.Response, int]:
        """A 2xx response (unread when streaming) and the retries it took; ProviderError otherwise."""
        attempt = 0
        while True:
            wait_s = self.entry.timeout_s
            remaining = call.remaining_s()
            if remaining is not None:
                if remaining <= 0.05:
                    raise ProviderError("timeout", f"{self.name}: the request's deadline passed before this attempt",
                                        retries=attempt, latency_ms=_ms(started))
                wait_s = min(wait_s, remaining)
            request = self._client.build_request("POST", "/chat/completions", json=body,
                                                 timeout=httpx.Timeout(wait_s, connect=min(wait_s, 5.0)))
            try:
                answer = await self._client.send(request, stream=stream)
                if answer.status_code >= 400 and stream:
                    await answer.aread()
                    await answer.aclose()
            except httpx.TimeoutException as exc:
                raise ProviderError("timeout", f"{self.name}: no answer within {wait_s:.3g} s "
                                    f"({type(exc).__name__})", retries=attempt, latency_ms=_ms(started)) from None
            except httpx.TransportError as exc:
                if attempt < self.entry.max_retries and self._can_wait(call, self._backoff(attempt, None)):
                    await self._sleep(self._backoff(attempt, None))
                    attempt += 1
                    continue
                raise ProviderError("connection_error", f"{self.name}: {type(exc).__name__}: {exc}",
                                    retries=attempt, latency_ms=_ms(started)) from None
            backoff = self._backoff(attempt, answer.headers.get("retry-after"))
            if answer.status_code in RETRYABLE_STATUS and attempt < self.entry.max_retries \
                    and self._can_wait(call, backoff):
                await self._sleep(backoff)
                attempt += 1
                continue
            if answer.status_code >= 400:
                outcome = ("rate_limited" if answer.status_code == 429 else
                           "server_error" if answer.status_code >= 500 else "client_error")
                raise ProviderError(outcome, f"{self.name}: HTTP {answer.status_code}: {answer.text[:300]}",
                                    status=answer.status_code, retries=attempt, latency_ms=_ms(started))
            return answer, attempt

    async def complete(self, call: ChatCall, model: ModelEntry) -> ProviderResult:
        started = time.perf_counter()
        answer, retries = await self._send(call, self._body(call, model, stream=False), False, started)
        return self._result(answer, call, retries, started)

    async def stream(self, call: ChatCall, model: ModelEntry, state: StreamState) -> AsyncIterator[str]:
        """Content deltas as the server sends them (server-sent events); `state` gets usage and the rest.

        Nothing is sent before the first delta arrives, so the router can still fall back on
        an error up to then; a failure later raises ProviderError mid-stream.
        """
        started = time.perf_counter()
        answer, state.retries = await self._send(call, self._body(call, model, stream=True), True, started)
        parts: list[str] = []
        try:
            async for line in answer.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                state.model = str(chunk.get("model") or state.model)
                usage = chunk.get("usage") or {}
                if usage:
                    state.tokens_in = int(usage.get("prompt_tokens") or 0) or None
                    state.tokens_out = int(usage.get("completion_tokens") or 0) or None
                for choice in chunk.get("choices") or []:
                    if choice.get("finish_reason"):
                        state.finish_reason = str(choice["finish_reason"])
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        parts.append(delta)
                        yield delta
        except httpx.TimeoutException:
            raise ProviderError("timeout", f"{self.name}: the stream stalled", retries=state.retries,
                                latency_ms=_ms(started)) from None
        except httpx.TransportError as exc:
            raise ProviderError("connection_error", f"{self.name}: the stream broke: {type(exc).__name__}",
                                retries=state.retries, latency_ms=_ms(started)) from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise ProviderError("bad_response", f"{self.name}: not a chat completion chunk ({exc})",
                                retries=state.retries, latency_ms=_ms(started)) from None
        finally:
            await answer.aclose()
        content = "".join(parts)
        state.tokens_in = state.tokens_in or prompt_tokens(call.messages)
        state.tokens_out = state.tokens_out or estimate_tokens(content)
        state.latency_ms = _ms(started)

    @staticmethod
    def _can_wait(call: ChatCall, seconds: float) -> bool:
        remaining = call.remaining_s()
        return remaining is None or seconds < remaining - 0.05

    def _result(self, answer: httpx.Response, call: ChatCall, retries: int, started: float) -> ProviderResult:
        try:
            data = answer.json()
            choice = data["choices"][0]
            content = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
            tokens_in = int(usage.get("prompt_tokens") or prompt_tokens(call.messages))
            tokens_out = int(usage.get("completion_tokens") or estimate_tokens(content))
            return ProviderResult(content, str(data.get("model") or ""), tokens_in, tokens_out,
                                  str(choice.get("finish_reason") or "stop"), _ms(started), retries)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ProviderError("bad_response", f"{self.name}: not a chat completion ({type(exc).__name__}: {exc})",
                                status=answer.status_code, retries=retries, latency_ms=_ms(started)) from None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


# --- local extractive ---------------------------------------------------------------------

_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)", re.MULTILINE)
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("""a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have having he
her here hers him his how i if in into is it its just me more most my no nor not now of off on once only or other our
out over own same she should so some such than that the their them then there these they this those through to too
under until up very was we were what when where which while who whom why will with would you your""".split())


def _terms(text: str) -> list[str]:
    # A plural-only stemmer: enough for "prices" to meet "price" without a stemming library.
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
            for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1]


def extract_answer(messages: list[dict[str, str]], max_tokens: int) -> str:
    """Sentences from the messages that best match the question, in their original order.

    The question is the last user message's last sentence; every other sentence of the
    conversation is a candidate, scored by the IDF-weighted overlap of its terms with the
    question's (ties go to the earlier sentence). As many as fit `max_tokens` are kept.
    With no overlap at all, the leading sentences are the answer (a summary's best guess).
    """
    sentences: list[str] = []
    question = ""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    for index, message in enumerate(messages):
        if message.get("role") == "assistant":
            continue
        found = [s.strip() for s in _SENTENCE.findall(message.get("content") or "") if s.strip()]
        if index == last_user and found:
            question = found[-1]
            found = found[:-1]
        sentences.extend(found)
    if not sentences:
        return question
    wanted = set(_terms(question))
    documents = [set(_terms(s)) for s in sentences]
    df = Counter(t for terms in documents for t in terms)
    n = len(sentences)
    scores = [sum(math.log(1 + n / df[t]) for t in terms & wanted) for terms in documents]
    order = sorted(range(n), key=lambda i: (-scores[i], i)) if any(scores) else list(range(n))
    kept: list[int] = []
    used = 0
    for i in order:
        if any(scores) and scores[i] == 0:
            break
        cost = estimate_tokens(sentences[i])
        if used + cost > max_tokens and kept:
            continue
        kept.append(i)
        used += cost
        if used >= max_tokens:
            break
    return " ".join(sentences[i] for i in sorted(kept))


class LocalExtractiveProvider:
    """Answers from the supplied text, offline; never a language model."""

    async def complete(self, call: ChatCall, model: ModelEntry) -> ProviderResult:
        started = time.perf_counter()
        content = extract_answer(call.messages, call.max_tokens)
        return ProviderResult(content, LOCAL_MODEL, prompt_tokens(call.messages), estimate_tokens(content),
                              "stop", _ms(started))

    async def stream(self, call: ChatCall, model: ModelEntry, state: StreamState) -> AsyncIterator[str]:
        """The same answer, one sentence at a time."""
        result = await self.complete(call, model)
        state.model, state.tokens_in, state.tokens_out = result.model, result.tokens_in, result.tokens_out
        state.latency_ms = result.latency_ms
        sentences = [s.strip() for s in _SENTENCE.findall(result.content) if s.strip()]
        for index, sentence in enumerate(sentences):
            yield sentence if index == 0 else " " + sentence

    async def aclose(self) -> None:
        pass
