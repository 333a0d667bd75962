"""The knowledge service application: its own Serve app behind route prefix `/knowledge`."""

from __future__ import annotations

from ray import serve
from ray.serve import Application

from deployments.args import ServiceArgs
from deployments.service import ServiceIngress

DESCRIPTION = "Ingests a tenant's documents with provenance and answers hybrid retrieval queries over them."


@serve.deployment
@serve.ingress()
class KnowledgeIngress(ServiceIngress):
    service = "knowledge"
    description = DESCRIPTION


def build_app(args: ServiceArgs) -> Application:
    """Serve application builder named by `configs/serve.yaml`."""
    # Serve passes a dict where the annotation is a string (postponed annotations).
    return KnowledgeIngress.bind(ServiceArgs.model_validate(args))
