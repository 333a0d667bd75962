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
