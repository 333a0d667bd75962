"""`stratmaster job` without a cluster: arguments, address resolution, auth headers and
error messages, against a stub dashboard on loopback where an answer is needed."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import cluster.jobs as jobs
from cluster.jobs import (
    DEFAULT_DASHBOARD_ADDRESS,
    ClusterAuthError,
    ClusterUnavailableError,
    JobNotFoundError,
    JobsClient,
    dashboard_url,
    resolve_address,
)
from stratmaster.cli import job_entrypoint, main
from stratmaster.settings import load_settings


@pytest.fixture(autouse=True)
def environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STRATMASTER_DATA_DIR", str(tmp_path))
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "DATABASE_URL", "KEYCLOAK_URL"):
        monkeypatch.delenv(name, raising=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- address ---------------------------------------------------------------------------
def test_an_explicit_address_wins_then_ray_address_then_the_local_dashboard(monkeypatch):
    assert resolve_address(None, load_settings()) == DEFAULT_DASHBOARD_ADDRESS == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "http://head.example:8265/")
    assert resolve_address(None, load_settings()) == "http://head.example:8265"
    assert resolve_address("https://other.example", load_settings()) == "https://other.example"


@pytest.mark.parametrize("value", ["127.0.0.1:6379", "auto", "local", "ray://head:10001", "ftp://head:8265",
                                   "http://:8265", "http://head:port"])
def test_addresses_that_are_not_a_dashboard_url_are_refused_with_a_hint(value):
    with pytest.raises(ClusterUnavailableError, match="http://127.0.0.1:8265"):
        dashboard_url(value, "RAY_ADDRESS")


@pytest.mark.parametrize("value", ["127.0.0.1:40123", "auto", "ray://head:10001", "http://head:8265"])
def test_settings_accept_every_form_ray_itself_puts_in_ray_address(monkeypatch, value):
    # Inside a Ray job RAY_ADDRESS holds the GCS host:port: loading settings there must not fail.
    monkeypatch.setenv("RAY_ADDRESS", value)
    assert load_settings().ray_address == value


def test_a_blank_ray_address_is_unset(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "  ")
    assert load_settings().ray_address is None


def test_the_cli_names_ray_address_when_it_holds_a_cluster_address(monkeypatch, capsys):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert main(["job", "list"]) == 2
    assert "RAY_ADDRESS='127.0.0.1:6379' is a Ray cluster address" in capsys.readouterr().err


def test_no_cluster_listening_exits_2_with_what_to_do(capsys):
    assert main(["job", "list", "--address", f"http://127.0.0.1:{_free_port()}"]) == 2
    err = capsys.readouterr().err
    assert "no Ray dashboard answers at http://127.0.0.1:" in err and "stratmaster up" in err


# --- auth ------------------------------------------------------------------------------
@pytest.mark.parametrize(("address", "local"), [
    ("http://127.0.0.1:8265", True), ("http://localhost:8265", True), ("http://[::1]:8265", True),
    ("http://127.8.0.1:8265", True), ("http://10.0.0.5:8265", False), ("https://ray.example.com", False),
])
def test_the_local_token_goes_only_to_loopback_addresses(monkeypatch, address, local):
    monkeypatch.setattr(jobs, "local_token_headers", lambda: {"authorization": "Bearer local"})
    assert jobs.auth_headers(address) == ({"authorization": "Bearer local"} if local else {})


# --- entrypoint and arguments ---------------------------------------------------------
def test_several_words_are_quoted_one_word_runs_as_written():
    assert job_entrypoint(["--", "python", "-c", "print('a b')"]) == "python -c 'print('\"'\"'a b'\"'\"')'"
    assert job_entrypoint(["python -m pipelines.eval_sweep && echo done"]) == \
        "python -m pipelines.eval_sweep && echo done"
    assert job_entrypoint(["--"]) == "" and job_entrypoint([]) == ""


@pytest.fixture
def no_connect(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("must not connect")

    monkeypatch.setattr(JobsClient, "connect", refuse)


def test_submit_without_an_entrypoint_is_a_usage_error(no_connect, capsys):
    assert main(["job", "submit", "--no-wait"]) == 2
    assert "no entrypoint" in capsys.readouterr().err
    assert main(["job", "submit", "--"]) == 2


def test_submit_checks_the_working_dir_before_connecting(no_connect, tmp_path, capsys):
    assert main(["job", "submit", "--working-dir", str(tmp_path / "missing"), "--", "true"]) == 2
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["job", "submit", "--metadata", "no-equals", "--", "true"],
    ["job", "logs", "raysubmit_x", "--follow", "--tail", "3"],
    ["job", "status"],
    ["job"],
])
def test_malformed_arguments_exit_2(no_connect, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_options_after_the_double_dash_belong_to_the_entrypoint(monkeypatch, capsys):
    seen = {}

    class Client:
        def submit(self, entrypoint, **kwargs):
            seen.update(kwargs, entrypoint=entrypoint)
            return "raysubmit_abc"

    monkeypatch.setattr(JobsClient, "connect", classmethod(lambda cls, address, settings: Client()))
    assert main(["job", "submit", "--no-wait", "--metadata", "a=1=2", "--submission-id", "mine",
                 "--", "python", "x.py", "--no-wait"]) == 0
    assert capsys.readouterr().out == "raysubmit_abc\n"
    assert seen == {"entrypoint": "python x.py --no-wait", "working_dir": None, "submission_id": "mine",
                    "metadata": {"a": "1=2"}}


# --- against a stub dashboard ---------------------------------------------------------
class StubDashboard(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, object]] = {}
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        status, body = type(self).answers.get(self.path, (404, f"Job {self.path} does not exist."))
        payload = (json.dumps(body) if not isinstance(body, str) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(body, str) else "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


JOB = {"type": "SUBMISSION", "job_id": None, "submission_id": "raysubmit_1", "driver_info": None,
       "status": "SUCCEEDED", "entrypoint": "echo hi", "message": "Job finished successfully.",
       "error_type": None, "start_time": 1_700_000_000_000, "end_time": 1_700_000_001_500,
       "metadata": {"k": "v"}, "runtime_env": {}, "driver_agent_http_address": None,
       "driver_node_id": None, "driver_exit_code": 0}


@pytest.fixture
def stub() -> Iterator[str]:
    StubDashboard.answers = {"/api/version": (200, {"version": "4", "ray_version": "2.60.0", "ray_commit": "x"}),
                             "/api/jobs/": (200, [JOB]), "/api/jobs/raysubmit_1": (200, JOB)}
    StubDashboard.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubDashboard)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_explicit_address_is_used_even_where_ray_would_take_the_environment(monkeypatch, stub, capsys):
    # JobSubmissionClient itself lets these variables replace the address it is given.
    dead = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("RAY_ADDRESS", dead)
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", dead)
    monkeypatch.setattr(jobs, "local_token_headers", lambda: {"authorization": "Bearer local-token"})
    assert main(["job", "list", "--address", stub]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["submission_id"], listed["status"], listed["start_time"], listed["end_time"]) == \
        ("raysubmit_1", "SUCCEEDED", 1_700_000_000.0, 1_700_000_001.5)
    assert ("/api/jobs/", "Bearer local-token") in StubDashboard.seen


def test_status_of_a_job_and_of_an_unknown_one(stub, capsys):
    assert main(["job", "status", "raysubmit_1", "--address", stub]) == 0
    assert json.loads(capsys.readouterr().out)["metadata"] == {"k": "v"}
    with pytest.raises(JobNotFoundError, match=f"no job 'raysubmit_2' on the cluster at {stub}"):
        JobsClient(stub).status("raysubmit_2")


def test_logs_tail_keeps_the_last_lines(stub):
    StubDashboard.answers["/api/jobs/raysubmit_1/logs"] = (200, {"logs": "one\ntwo\nthree\n"})
    client = JobsClient(stub)
    assert client.logs("raysubmit_1", tail=2) == "two\nthree\n"
    assert client.logs("raysubmit_1", tail=0) == ""
    assert client.logs("raysubmit_1") == "one\ntwo\nthree\n"


@pytest.mark.parametrize(("status", "message"), [
    (401, "requires an auth token and none was found on this machine"),
    (403, "rejected the auth token sent"),
])
def test_auth_refusals_say_what_to_do(monkeypatch, stub, capsys, status, message):
    monkeypatch.setattr(jobs, "local_token_headers", dict)
    StubDashboard.answers["/api/version"] = (status, "Unauthorized")
    with pytest.raises(ClusterAuthError, match=message):
        JobsClient(stub)
    assert main(["job", "list", "--address", stub]) == 2
    assert message in capsys.readouterr().err


def test_a_server_that_is_not_a_dashboard_is_named(stub):
    StubDashboard.answers.pop("/api/version")
    with pytest.raises(ClusterUnavailableError, match="answers, but not as a Ray dashboard"):
        JobsClient(stub)
