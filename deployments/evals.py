"""The evals service application: its own Serve app behind route prefix `/evals`.

`POST /evals/score` scores one RAG case synchronously with `stratmaster.evals.rag_cases`
(the JSONL case format, as a request body). The model for answer relevancy loads on the
first request that needs it, in this replica.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from fastapi import Body, Depends, FastAPI, Request
from ray import serve
from ray.serve import Application

from deployments.args import ServiceArgs
from deployments.http import APIError, require_principal
from deployments.service import ServiceIngress, service_api
from stratmaster.identity import Principal

DESCRIPTION = "Computes retrieval and RAG quality metrics and gates releases on them."

SCORE_EXAMPLE = {
    "id": "pricing-1",
    "question": "Did the premium tier keep urban customers?",
    "contexts": [{"id": "c1", "text": "Urban churn fell to 3% after the premium tier launched."},
                 {"id": "c2", "text": "Rural stores saw no change in visits."}],
    "answer": "Urban churn fell to 3% after the premium launch [c1].",
    "relevant": ["c1"],
}


def evals_api(service: str, description: str) -> FastAPI:
    api = service_api(service, description)

    @api.post("/score", tags=["evals"], summary="Score one RAG case: faithfulness, context, citations, relevancy",
              responses={422: {"description": "The case is malformed; the message names the field"}})
    async def score(request: Request, case: dict[str, Any] = Body(..., examples=[SCORE_EXAMPLE]),
                    relevancy: bool = True, principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        from stratmaster.evals.datasets import DatasetFormatError
        from stratmaster.evals.rag_cases import parse_case, score_case

        try:
            parsed = parse_case(Path("request body"), 1, case)
        except DatasetFormatError as exc:
            raise APIError(422, "invalid_case", str(exc)) from None
        ingress: EvalsIngress = request.app.state.ingress
        embed = (await asyncio.to_thread(ingress.embedder)).embed if relevancy else None
        return await asyncio.to_thread(score_case, parsed, embed)

    return api


@serve.deployment
@serve.ingress()
class EvalsIngress(ServiceIngress):
    service = "evals"
    description = DESCRIPTION

    def __init__(self, args: ServiceArgs) -> None:
        super().__init__(args)
        self._model: Any = None
        self._model_lock = threading.Lock()

    def build_api(self) -> FastAPI:
        return evals_api(self.service, self.description)

    def embedder(self) -> Any:
        """The knowledge service's model (int8 ONNX), loaded once per replica on first use."""
        with self._model_lock:
            if self._model is None:
                from stratmaster.knowledge.onnx_embedding import OnnxEmbedder

                self._model = OnnxEmbedder(self.runtime.settings.data_dir / "models", precision="int8")
            return self._model


def build_app(args: ServiceArgs) -> Application:
    """Serve application builder named by `configs/serve.yaml`."""
    # Serve passes a dict where the annotation is a string (postponed annotations).
    return EvalsIngress.bind(ServiceArgs.model_validate(args))
