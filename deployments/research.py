"""The research service application: its own Serve app behind route prefix `/research`."""

from __future__ import annotations

from ray import serve
from ray.serve import Application

from deployments.args import ServiceArgs
from deployments.service import ServiceIngress

DESCRIPTION = "Runs research workflows that turn a strategy question into a cited decision brief."


@serve.deployment
@serve.ingress()
class ResearchIngress(ServiceIngress):
    service = "research"
    description = DESCRIPTION


def build_app(args: ServiceArgs) -> Application:
    """Serve application builder named by `configs/serve.yaml`."""
    # Serve passes a dict where the annotation is a string (postponed annotations).
    return ResearchIngress.bind(ServiceArgs.model_validate(args))
