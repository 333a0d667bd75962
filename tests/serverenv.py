"""The real servers' addresses for tests: `make test` starts them and exports TEST_* variables.

Without the variable a test is skipped, unless STRATMASTER_REQUIRE_SERVERS=1 (set by
`make test`), where skipping would hide a server that did not start: then it fails.
"""

from __future__ import annotations

import os

import pytest


def server_url(variable: str) -> str:
    url = os.environ.get(variable)
    if not url:
        if os.environ.get("STRATMASTER_REQUIRE_SERVERS") == "1":
            pytest.fail(f"STRATMASTER_REQUIRE_SERVERS=1 but {variable} is unset")
        pytest.skip(f"{variable} is unset (eval \"$(bash scripts/servers.sh env)\")")
    return url


# Ports for servers the tests start. Not from the kernel's ephemeral range (bind to port 0):
# a port found free that way is handed out again to the next outgoing connection or gRPC
# listener - Ray's own processes open dozens while a cluster starts - and the server meant
# for it then fails with "address already in use". Below the ephemeral range (32768 up) and
# above Ray's worker ports (10002-19999), nothing else takes ports unasked.
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()


def free_loopback_port() -> int:
    """A port on 127.0.0.1 that is free now, outside the ephemeral range, never handed out before here."""
    import random
    import socket

    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORT_RANGE}")
