"""A second platform for a test module: `stratmaster up` as a subprocess with its own settings.

One process may join only one Ray cluster and the session platform (tests/integration/
conftest.py) holds this one, so a test that needs the platform started differently -
against Temporal, with Keycloak - starts it as `make run` would, on free loopback ports and
a throw-away data dir, and stops it afterwards.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from serverenv import free_loopback_port

from bench.platform_bench import Platform

BACKENDS = ("DATABASE_URL", "REDIS_URL", "KEYCLOAK_URL", "RAY_ADDRESS", "TEMPORAL_ADDRESS")


@contextmanager
def platform_process(prefix: str, settings: dict[str, str], timeout_s: float = 300) -> Iterator[tuple[str, Path]]:
    """(base URL, data dir) of a running platform with `settings` over the embedded defaults."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    port = free_loopback_port()
    env = {name: value for name, value in os.environ.items() if name not in BACKENDS}
    env.update({"STRATMASTER_DATA_DIR": str(data_dir), "STRATMASTER_HTTP_PORT": str(port),
                "STRATMASTER_METRICS_PORT": str(free_loopback_port()), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                "PYTHONUNBUFFERED": "1", **settings})
    platform = Platform(env, data_dir / "platform.log")
    platform.start()
    try:
        deadline = time.monotonic() + timeout_s
        while platform.cli_ready is None:
            if platform.exited() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the platform did not start:\n{platform.tail()}")
            time.sleep(1)
        yield f"http://127.0.0.1:{port}", data_dir
    finally:
        platform.stop()
