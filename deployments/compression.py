"""The compression service application: its own Serve app behind route prefix `/compression`.

`POST /compression/compress` shrinks retrieved chunks to a token budget with
`stratmaster.compression` (extractive, prune or truncate), counting tokens with the
embedding model's WordPiece tokenizer, or with the target `model`'s tokenizer when one is
named and its tokenizer.json is available offline (else a 422 `tokenizer_unavailable`:
nothing is downloaded and no other tokenizer stands in for it). The answer maps every kept
sentence back to its chunk id and character span, so citations survive, and names the
tokenizer that counted. A budget no text fits is a 422 that names the smallest budget that
would work.

The default path is lexical (BM25, the chunks' rank order, a per-chunk floor) and takes
~15 ms for 20 chunks on this CPU. `semantic: true` adds the embedding model's cosine for the
8 lexically best sentences (~60-90 ms, the int8 ONNX embedder runs one text at a time) and
measured no better on CISI (bench/results/compression.json); the model loads on the first
request that asks for it, in this replica.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, Field, model_validator
from ray import serve
from ray.serve import Application

from deployments.args import ServiceArgs
from deployments.http import APIError, require_principal
from deployments.service import ServiceIngress, service_api
from stratmaster.identity import Principal

DESCRIPTION = "Compresses retrieved context to a token budget and keeps stored artefacts small."
MAX_CHUNKS = 500
MAX_CHUNK_CHARS = 50_000


class ChunkIn(BaseModel):
    id: str = Field(min_length=1, max_length=320)
    text: str = Field(max_length=MAX_CHUNK_CHARS)


class CompressRequest(BaseModel):
    query: str | None = Field(None, max_length=4000, description="What the context is for; none: keep what is central")
    chunks: list[ChunkIn] = Field(min_length=1, max_length=MAX_CHUNKS)
    target_tokens: int | None = Field(None, ge=1, le=1_000_000)
    ratio: float | None = Field(None, gt=0, le=1)
    mode: Literal["extractive", "prune", "truncate"] = "extractive"
    semantic: bool = Field(False, description="Add embedding similarity for the lexically best sentences "
                                              "(extractive, prune); slower, not better on CISI")
    model: str | None = Field(None, max_length=200, description="Target model: count tokens with its tokenizer "
                                                                 "(only tokenizers available offline)")

    @model_validator(mode="after")
    def _one_budget(self) -> CompressRequest:
        if (self.target_tokens is None) == (self.ratio is None):
            raise ValueError("give exactly one of target_tokens and ratio")
        if len({c.id for c in self.chunks}) != len(self.chunks):
            raise ValueError("chunk ids must be unique")
        return self


def compression_api(service: str, description: str) -> FastAPI:
    api = service_api(service, description)

    @api.post("/compress", tags=["compression"], summary="Compress chunks to a token budget, keeping citations",
              responses={422: {"description": "Malformed request, a budget no sentence fits (names the smallest), "
                                              "or a model whose tokenizer is not available offline"}})
    async def compress_chunks(body: CompressRequest, request: Request,
                              principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        from stratmaster.compression import BudgetTooSmall, Chunk, compress
        from stratmaster.compression.tokens import EMBEDDING_TOKENIZER, TokenizerUnavailable, counter_for

        ingress: CompressionIngress = request.app.state.ingress
        if body.model is None:
            counter, tokenizer = await asyncio.to_thread(ingress.runtime.token_counter), EMBEDDING_TOKENIZER
        else:
            try:
                counter, tokenizer = await asyncio.to_thread(counter_for, body.model), body.model
            except TokenizerUnavailable as exc:
                raise APIError(422, "tokenizer_unavailable", str(exc), {"model": exc.model}) from None
        embed = None
        if body.semantic and body.mode != "truncate":
            embed = (await asyncio.to_thread(ingress.runtime.embedding_model)).embed
        try:
            result = await asyncio.to_thread(
                compress, body.query, [Chunk(c.id, c.text) for c in body.chunks], body.target_tokens, body.ratio,
                body.mode, counter, embed)
        except BudgetTooSmall as exc:
            raise APIError(422, "budget_too_small", str(exc),
                           {"budget": exc.budget, "smallest": exc.smallest, "mode": exc.mode}) from None
        return {**asdict(result), "tokenizer": tokenizer}

    return api


@serve.deployment
@serve.ingress()
class CompressionIngress(ServiceIngress):
    service = "compression"
    description = DESCRIPTION

    async def compress_for(self, query: str | None, chunks: list[dict[str, str]], target_tokens: int,
                           correlation_id: str | None = None) -> dict[str, Any]:
        """Handle method for the other services (research): extractive compression to a budget with
        this replica's tokenizer, as an envelope {"result": ...} or {"error": ...}."""
        from stratmaster.compression import BudgetTooSmall, Chunk, compress
        from stratmaster.logs import correlation_scope

        with correlation_scope(correlation_id):
            counter = await asyncio.to_thread(self.runtime.token_counter)
            try:
                result = await asyncio.to_thread(compress, query, [Chunk(c["id"], c["text"]) for c in chunks],
                                                 target_tokens, None, "extractive", counter, None)
            except BudgetTooSmall as exc:
                return {"error": {"status": 422, "code": "budget_too_small", "message": str(exc)}}
            return {"result": asdict(result)}

    def build_api(self) -> FastAPI:
        return compression_api(self.service, self.description)


def build_app(args: ServiceArgs) -> Application:
    """Serve application builder named by `configs/serve.yaml`."""
    # Serve passes a dict where the annotation is a string (postponed annotations).
    return CompressionIngress.bind(ServiceArgs.model_validate(args))
