"""The evals service application: its own Serve app behind route prefix `/evals`."""

from __future__ import annotations

from ray import serve
from ray.serve import Application

from deployments.args import ServiceArgs
from deployments.service import ServiceIngress

DESCRIPTION = "Computes retrieval and RAG quality metrics and gates releases on them."


@serve.deployment
@serve.ingress()
class EvalsIngress(ServiceIngress):
    service = "evals"
    description = DESCRIPTION


def build_app(args: ServiceArgs) -> Application:
    """Serve application builder named by `configs/serve.yaml`."""
    # Serve passes a dict where the annotation is a string (postponed annotations).
    return EvalsIngress.bind(ServiceArgs.model_validate(args))
