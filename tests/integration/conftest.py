"""One local Ray cluster with every Serve application, shared by the whole test run.

Starting Ray costs ~10 s and ~1.5 GB, so the platform starts once per session (Ray's
"tips for testing Ray programs"), on free loopback ports and a throw-away data dir, with
the embedded defaults that `make run` uses.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratmaster.identity import LocalIssuer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def platform() -> Iterator[object]:
    from cluster.local import start_platform
    from stratmaster.settings import get_settings, load_settings

    data_dir = Path(tempfile.mkdtemp(prefix="sm-it-"))
    overrides = {
        "STRATMASTER_DATA_DIR": str(data_dir),
        "STRATMASTER_HTTP_PORT": str(_free_port()),
        "STRATMASTER_METRICS_PORT": str(_free_port()),
    }
    saved = {name: os.environ.get(name) for name in (*overrides, "DATABASE_URL", "REDIS_URL", "KEYCLOAK_URL")}
    os.environ.update(overrides)
    for name in ("DATABASE_URL", "REDIS_URL", "KEYCLOAK_URL"):
        os.environ.pop(name, None)  # the embedded defaults, as `make run` starts them
    get_settings.cache_clear()
    # Ray's unix socket paths must stay short: a short temp dir of our own.
    ray_dir = Path(tempfile.mkdtemp(prefix="smray", dir="/tmp"))
    try:
        running = start_platform(load_settings(), dashboard=False, temp_dir=ray_dir, timeout_s=240)
    finally:
        # Ray's processes took their environment at start; other tests must not see ours.
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def issuer(platform) -> LocalIssuer:
    """Signs tokens with the key the running platform verifies against."""
    return LocalIssuer(platform.settings.keys_dir, audience=platform.settings.token_audience)


@pytest.fixture(scope="session")
def bearer(issuer) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue('it-analyst', 'acme', ('analyst',), 3600)}"}
