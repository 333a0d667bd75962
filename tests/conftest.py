"""Shared test set-up. Ray reads this variable when it is imported, so it is set here,
before any test module imports ray: a local node then binds 127.0.0.1 only."""

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
