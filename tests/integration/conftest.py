"""One local Ray cluster with every Serve application, shared by the whole test run.

Starting Ray costs ~10 s and ~1.5 GB, so the platform starts once per session (Ray's
"tips for testing Ray programs"), on free loopback ports and a throw-away data dir, with
the embedded defaults that `make run` uses.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serverenv import free_loopback_port

from stratmaster.identity import LocalIssuer


@pytest.fixture(scope="session")
def platform() -> Iterator[object]:
    from cluster.local import start_platform
    from stratmaster.settings import get_settings, load_settings

    data_dir = Path(tempfile.mkdtemp(prefix="sm-it-"))
    overrides = {
        "STRATMASTER_DATA_DIR": str(data_dir),
        "STRATMASTER_HTTP_PORT": str(free_loopback_port()),
        "STRATMASTER_METRICS_PORT": str(free_loopback_port()),
    }
    saved = {name: os.environ.get(name) for name in (*overrides, "DATABASE_URL", "REDIS_URL", "KEYCLOAK_URL")}
    os.environ.update(overrides)
    for name in ("DATABASE_URL", "REDIS_URL", "KEYCLOAK_URL"):
        os.environ.pop(name, None)  # the embedded defaults, as `make run` starts them
    get_settings.cache_clear()
    # Ray's unix socket paths must stay short: a short temp dir of our own.
    ray_dir = Path(tempfile.mkdtemp(prefix="smray", dir="/tmp"))
    try:
        # With the dashboard: the evals service submits runs to its job server.
        running = start_platform(load_settings(), dashboard=True, dashboard_port=free_loopback_port(), temp_dir=ray_dir,
                                 timeout_s=240)
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
def http(platform) -> Iterator[httpx.Client]:
    """A client of the platform's HTTP proxy (long timeout: a first call may load a model)."""
    with httpx.Client(base_url=platform.base_url, timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def issuer(platform) -> LocalIssuer:
    """Signs tokens with the key the running platform verifies against."""
    return LocalIssuer(platform.settings.keys_dir, audience=platform.settings.token_audience)


@pytest.fixture(scope="session")
def bearer(issuer) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue('it-analyst', 'acme', ('analyst',), 3600)}"}


CISI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cisi"

def make_cisi_slice(folder: Path, queries: int = 4) -> Path:
    """The first judged queries and the documents they judge, plus 40 others, in BEIR form."""
    lines = (CISI / "qrels" / "test.tsv").read_text().splitlines()
    qrels: dict[str, list[tuple[str, str]]] = {}
    for line in lines[1:]:
        query, doc, grade = line.split("\t")
        qrels.setdefault(query, []).append((doc, grade))
    chosen = dict(list(qrels.items())[:queries])
    wanted = {doc for pairs in chosen.values() for doc, _ in pairs}
    corpus = [json.loads(line) for line in (CISI / "corpus.jsonl").read_text().splitlines()]
    kept = [d for d in corpus if d["_id"] in wanted] + [d for d in corpus if d["_id"] not in wanted][:40]
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in kept))
    all_queries = [json.loads(line) for line in (CISI / "queries.jsonl").read_text().splitlines()]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in all_queries if q["_id"] in chosen))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, pairs in chosen.items() for d, g in pairs))
    return folder


@pytest.fixture
def cisi_slice(tmp_path: Path) -> Path:
    """A small BEIR dataset cut from CISI: 4 judged queries, their documents and 40 others."""
    return make_cisi_slice(tmp_path / "cisi-slice")
