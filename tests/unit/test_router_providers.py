"""Providers over real HTTP: the OpenAI-compatible client against a fake server on 127.0.0.1,
and the offline local-extractive provider."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from router_fake_llm import FakeLLM, answer, fail, garbage, stall, stall_mid_stream

from stratmaster.router.catalogue import ModelEntry, ProviderEntry
from stratmaster.router.providers import (
    ChatCall,
    LocalExtractiveProvider,
    OpenAICompatibleProvider,
    ProviderError,
    StreamState,
    extract_answer,
)

MODEL = ModelEntry(name="gpt-a", provider_model="served-a")
CALL = ChatCall([{"role": "user", "content": "Hello?"}], max_tokens=16)


@pytest.fixture(scope="module")
def fake():
    with FakeLLM() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake):
    fake.reset()


def provider(base_url: str, waits: list[float] | None = None, **overrides) -> OpenAICompatibleProvider:
    settings = {"kind": "openai-compatible", "base_url": base_url, "timeout_s": 2.0, "max_retries": 2,
                "backoff_s": 0.01, "max_backoff_s": 0.5, "models": [MODEL.model_dump()], **overrides}

    async def sleep(seconds: float) -> None:
        if waits is not None:
            waits.append(seconds)
        await asyncio.sleep(min(seconds, 0.05))

    return OpenAICompatibleProvider("fake", ProviderEntry(**settings), overrides.pop("key", "sk-test"), sleep=sleep)


async def call(client: OpenAICompatibleProvider, chat: ChatCall = CALL):
    try:
        return await client.complete(chat, MODEL)
    finally:
        await client.aclose()


def test_an_answer_is_parsed_with_usage_and_the_provider_model_name(fake):
    fake.script("served-a", answer("Prices rose."))
    result = asyncio.run(call(provider(fake.base_url), ChatCall(CALL.messages, 16, 0.3, {"top_p": 0.9})))
    assert (result.content, result.tokens_in, result.tokens_out, result.retries) == ("Prices rose.", 1000, 500, 0)
    sent = fake.calls("served-a")[0]
    assert sent.body["max_tokens"] == 16 and sent.body["temperature"] == 0.3 and sent.body["top_p"] == 0.9
    assert sent.authorization == "Bearer sk-test"


def test_5xx_and_429_are_retried_with_growing_backoff_and_retry_after_is_honoured(fake):
    fake.script("served-a", fail(500), fail(429, retry_after="0.2"), answer("third time"))
    waits: list[float] = []
    result = asyncio.run(call(provider(fake.base_url, waits)))
    assert result.content == "third time" and result.retries == 2 and len(fake.calls()) == 3
    assert waits == [0.01, 0.2]  # backoff_s, then Retry-After over 2 x backoff_s


def test_retry_after_is_capped_and_retries_run_out(fake):
    fake.script("served-a", fail(429, retry_after="60"), fail(429, retry_after="60"), fail(429, retry_after="60"))
    waits: list[float] = []
    with pytest.raises(ProviderError) as caught:
        asyncio.run(call(provider(fake.base_url, waits)))
    assert caught.value.outcome == "rate_limited" and caught.value.status == 429 and caught.value.retries == 2
    assert waits == [0.5, 0.5] and len(fake.calls()) == 3


def test_a_stall_is_a_timeout_and_is_not_retried(fake):
    fake.script("served-a", stall(1.5))
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        asyncio.run(call(provider(fake.base_url, timeout_s=0.3)))
    assert caught.value.outcome == "timeout" and "0.3 s" in caught.value.message
    assert time.monotonic() - started < 1.2 and len(fake.calls()) == 1


def test_a_4xx_is_not_retried(fake):
    fake.script("served-a", fail(400))
    with pytest.raises(ProviderError) as caught:
        asyncio.run(call(provider(fake.base_url)))
    assert caught.value.outcome == "client_error" and len(fake.calls()) == 1


def test_a_body_that_is_not_a_completion_is_a_bad_response(fake):
    fake.script("served-a", garbage())
    with pytest.raises(ProviderError) as caught:
        asyncio.run(call(provider(fake.base_url)))
    assert caught.value.outcome == "bad_response"


def test_nothing_listening_is_a_connection_error_after_retries():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    waits: list[float] = []
    with pytest.raises(ProviderError) as caught:
        asyncio.run(call(provider(f"http://127.0.0.1:{port}/v1", waits)))
    assert caught.value.outcome == "connection_error" and caught.value.retries == 2 and waits == [0.01, 0.02]


CONTEXT = ("Acme raised prices by 12 percent in March. The weather was mild all spring. "
           "Urban customers did not leave after the price rise. Rural stores saw fewer visits.")


def test_local_extractive_answers_from_the_messages_in_their_order():
    messages = [{"role": "system", "content": CONTEXT},
                {"role": "user", "content": "Did customers leave after the price rise?"}]
    local = LocalExtractiveProvider()
    result = asyncio.run(local.complete(ChatCall(messages, 64), ModelEntry(name="local-extractive")))
    assert result.model == "local-extractive"
    assert result.content.startswith("Acme raised prices") and "Urban customers did not leave" in result.content
    assert "weather" not in result.content


def test_local_extractive_keeps_to_max_tokens_and_falls_back_to_leading_sentences():
    messages = [{"role": "user", "content": CONTEXT + " Summarise."}]
    short = extract_answer(messages, max_tokens=12)
    assert short == "Acme raised prices by 12 percent in March."
    assert extract_answer([{"role": "user", "content": "Just a question?"}], 50) == "Just a question?"


async def collect(client: OpenAICompatibleProvider, state: StreamState) -> list[str]:
    got: list[str] = []
    try:
        async for delta in client.stream(CALL, MODEL, state):
            got.append(delta)
    finally:
        await client.aclose()
    return got


def test_a_stream_yields_deltas_and_reports_usage(fake):
    fake.script("served-a", fail(500), answer("Prices rose in March."))
    state = StreamState()
    deltas = asyncio.run(collect(provider(fake.base_url), state))
    assert "".join(deltas) == "Prices rose in March." and len(deltas) == 4
    assert (state.tokens_in, state.tokens_out, state.model, state.retries) == (1000, 500, "served-a", 1)
    sent = fake.calls()[-1].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_a_stream_that_stalls_after_its_first_delta_raises_a_timeout(fake):
    fake.script("served-a", stall_mid_stream(1.5, "one two three"))
    got: list[str] = []

    async def run() -> None:
        client = provider(fake.base_url, timeout_s=0.3)
        try:
            async for delta in client.stream(CALL, MODEL, StreamState()):
                got.append(delta)
        finally:
            await client.aclose()

    with pytest.raises(ProviderError) as caught:
        asyncio.run(run())
    assert got == ["one"] and caught.value.outcome == "timeout"


def test_the_local_provider_streams_its_sentences():
    messages = [{"role": "system", "content": CONTEXT}, {"role": "user", "content": "What about prices and visits?"}]
    state = StreamState()

    async def run() -> list[str]:
        return [d async for d in LocalExtractiveProvider().stream(ChatCall(messages, 64),
                                                                  ModelEntry(name="local-extractive"), state)]

    deltas = asyncio.run(run())
    assert len(deltas) >= 2 and deltas[1].startswith(" ") and state.model == "local-extractive"
