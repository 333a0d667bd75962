"""The compression service application: its own Serve app behind route prefix `/compression`."""

from __future__ import annotations

from ray import serve
from ray.serve import Application

from deployments.args import ServiceArgs
from deployments.service import ServiceIngress

DESCRIPTION = "Compresses retrieved context to a token budget and keeps stored artefacts small."


@serve.deployment
@serve.ingress()
class CompressionIngress(ServiceIngress):
    service = "compression"
    description = DESCRIPTION


def build_app(args: ServiceArgs) -> Application:
    """Serve application builder named by `configs/serve.yaml`."""
    # Serve passes a dict where the annotation is a string (postponed annotations).
    return CompressionIngress.bind(ServiceArgs.model_validate(args))
