"""What every ingress replica sets up once: settings, JSON logs, token verifier, metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from ray import serve

from deployments.http import EdgeMetrics
from deployments.ray_metrics import instrument
from stratmaster import __version__
from stratmaster.identity import create_verifier
from stratmaster.logs import configure_logging
from stratmaster.security.limits import create_rate_limiter
from stratmaster.settings import Settings, get_settings
from stratmaster.telemetry import HTTP_REQUEST_DURATION, HTTP_REQUESTS

log = logging.getLogger("stratmaster.runtime")


class ReplicaRuntime:
    """Per-replica context shared by routes (via `app.state.runtime`) and handle methods."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.started_at = time.time()
        # A malformed variable raises ConfigurationError here: the replica fails to
        # start and Serve reports the message, naming the variable, as the deploy error.
        self.settings: Settings = get_settings()
        configure_logging(service, self.settings.log_level)
        self.verifier = create_verifier(self.settings)
        self.edge_metrics = EdgeMetrics(instrument(HTTP_REQUESTS), instrument(HTTP_REQUEST_DURATION))
        self.rate_limiter = create_rate_limiter(self.settings)
        self._models: dict[str, Any] = {}
        self._models_lock = threading.Lock()
        log.info("replica started", extra={"version": __version__, "replica": self.replica_id(),
                                           "backends": self.settings.backends()})

    def attach(self, app: FastAPI) -> FastAPI:
        """Give an app built for this replica what the shared stack reads from its state."""
        app.state.runtime = self
        app.state.verifier = self.verifier
        app.state.edge_metrics = self.edge_metrics
        app.state.audit = self.audit_log
        app.state.rate_limiter = self.rate_limiter
        app.state.max_request_bytes = self.settings.max_request_bytes
        # Serve's proxy takes X-Request-ID as its request id and echoes it in the response.
        app.state.proxy_echoes_request_id = True
        return app

    def embedding_model(self) -> Any:
        """The knowledge service's model (int8 ONNX), loaded once per replica on first use."""
        def load() -> Any:
            from stratmaster.knowledge.onnx_embedding import OnnxEmbedder

            return OnnxEmbedder(self.settings.data_dir / "models", precision="int8")
        return self._loaded("embedding", load)

    def audit_log(self) -> Any:
        """The audit log in the platform's database, connected on the first audited call."""
        def load() -> Any:
            from stratmaster.db.engine import create_db_engine
            from stratmaster.security.audit import AuditLog

            return AuditLog(create_db_engine(self.settings.effective_database_url))
        return self._loaded("audit", load)

    def token_counter(self) -> Any:
        """The embedding model's WordPiece tokenizer, loaded once per replica on first use."""
        def load() -> Any:
            from stratmaster.knowledge.chunking import WordpieceCounter

            return WordpieceCounter()
        return self._loaded("tokens", load)

    def _loaded(self, name: str, load: Callable[[], Any]) -> Any:
        with self._models_lock:
            if name not in self._models:
                self._models[name] = load()
            return self._models[name]

    @staticmethod
    def replica_id() -> str:
        try:
            return serve.get_replica_context().replica_id.unique_id
        except RuntimeError:  # outside a replica (unit tests)
            return "local"

    def uptime_s(self) -> float:
        return round(time.time() - self.started_at, 3)
