"""The router service application: its own Serve app behind route prefix `/router`."""

from __future__ import annotations

from ray import serve
from ray.serve import Application

from deployments.args import ServiceArgs
from deployments.service import ServiceIngress

DESCRIPTION = "Chooses, calls and accounts for the model that serves each generation task."


@serve.deployment
@serve.ingress()
class RouterIngress(ServiceIngress):
    service = "router"
    description = DESCRIPTION


def build_app(args: ServiceArgs) -> Application:
    """Serve application builder named by `configs/serve.yaml`."""
    # Serve passes a dict where the annotation is a string (postponed annotations).
    return RouterIngress.bind(ServiceArgs.model_validate(args))
