"""Request and response shapes of the router's API (OpenAI chat completions plus `routing`)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stratmaster.router.service import Completion, StreamingCompletion

TASK_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
MAX_MESSAGES = 256
MAX_CONTENT_CHARS = 400_000
MAX_TOTAL_CHARS = 2_000_000  # ~500k tokens: past any context window the catalogue lists today


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str = Field(max_length=MAX_CONTENT_CHARS)
    name: str | None = Field(None, max_length=64)


class CompletionRequest(BaseModel):
    """An OpenAI chat-completions request, plus the task the router routes on."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field("default", pattern=TASK_PATTERN,
                      description="What the generation is for (plan, synthesize, verify, summarize, judge, ...)")
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    model: str | None = Field(None, max_length=128,
                              description="Pin a catalogue model; the policy's constraints still apply")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: list[str] | str | None = None
    stream: bool = Field(False, description="Answer as server-sent events (chat.completion.chunk), the last "
                                            "chunk carrying usage and the routing block")
    user: str | None = Field(None, max_length=256)

    @field_validator("messages")
    @classmethod
    def _has_user(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" for m in value):
            raise ValueError("needs at least one message with role 'user'")
        total = sum(len(m.content) for m in value)
        if total > MAX_TOTAL_CHARS:
            raise ValueError(f"{total:,} characters in all; at most {MAX_TOTAL_CHARS:,}")
        return value

    def plain_messages(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]

    def extra(self) -> dict[str, Any]:
        """Sampling options passed through to an OpenAI-compatible provider as given."""
        return {k: v for k, v in (("top_p", self.top_p), ("stop", self.stop), ("user", self.user)) if v is not None}


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    score: float = Field(ge=0, le=1, description="Quality of the answer, 0 (useless) to 1 (right)")
    call_id: str | None = Field(None, max_length=36, description="The routing.call_id of the rated answer")
    task: str | None = Field(None, pattern=TASK_PATTERN, description="Without call_id: the task rated")
    model: str | None = Field(None, max_length=128, description="Without call_id: the model rated")
    source: Literal["user", "eval"] = "user"


def completion_body(done: Completion) -> dict[str, Any]:
    """The OpenAI chat.completion object, with the router's `routing` block."""
    call = done.call
    return {
        "id": f"chatcmpl-{call.id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": done.provider_model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": done.content},
                     "finish_reason": done.finish_reason}],
        "usage": {"prompt_tokens": call.tokens_in, "completion_tokens": call.tokens_out,
                  "total_tokens": call.tokens_in + call.tokens_out},
        "routing": {
            "call_id": call.id,
            "model": call.model,
            "provider": call.provider,
            "task": call.task,
            "policy": done.decision.policy,
            "why": done.decision.why,
            "chosen_by": done.decision.chooser,
            "fallbacks_tried": done.fallbacks_tried,
            "excluded": done.decision.excluded,
            "cost_usd": round(call.cost_usd, 8),
            "retries": done.extra.get("retries", 0),
            "provider_ms": done.provider_ms,
            "router_overhead_ms": done.router_overhead_ms,
            "temperature_capped_from": done.decision.temperature_capped_from,
        },
    }


async def completion_events(opened: StreamingCompletion) -> AsyncIterator[str]:
    """OpenAI's streaming shape: `data: {chat.completion.chunk}` events, then `data: [DONE]`.

    The last chunk has the finish reason, `usage` and the `routing` block (and `error`, when
    the model failed mid-stream: the answer is then cut short).
    """
    head: dict[str, Any] = {"id": f"chatcmpl-{opened.call_id}", "object": "chat.completion.chunk",
                            "created": int(time.time())}
    first = True
    async for delta in opened.deltas():
        piece = {"content": delta}
        if first:
            piece["role"] = "assistant"
            first = False
        yield "data: " + json.dumps({**head, "model": opened.state.model or opened.model,
                                     "choices": [{"index": 0, "delta": piece, "finish_reason": None}]}) + "\n\n"
    call = opened.call
    assert call is not None
    last: dict[str, Any] = {
        **head, "model": opened.state.model or opened.model,
        "choices": [{"index": 0, "delta": {},
                     "finish_reason": "error" if opened.error else opened.state.finish_reason}],
        "usage": {"prompt_tokens": call.tokens_in, "completion_tokens": call.tokens_out,
                  "total_tokens": call.tokens_in + call.tokens_out},
        "routing": {"call_id": call.id, "model": call.model, "provider": call.provider, "task": call.task,
                    "policy": opened.decision.policy, "why": opened.decision.why,
                    "chosen_by": opened.decision.chooser, "fallbacks_tried": opened.fallbacks_tried,
                    "excluded": opened.decision.excluded, "cost_usd": round(call.cost_usd, 8),
                    "retries": opened.state.retries, "provider_ms": call.latency_ms,
                    "temperature_capped_from": opened.decision.temperature_capped_from},
    }
    if opened.error:
        last["error"] = opened.error
    yield "data: " + json.dumps(last) + "\n\n"
    yield "data: [DONE]\n\n"
