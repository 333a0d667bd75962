"""`stratmaster job` against a real Ray head with its dashboard, as a user drives it.

The session platform runs without a dashboard (no job server), so this module starts a
small head of its own with `ray start --head --block` on free loopback ports, with token
auth on and this machine's token, as `stratmaster up` has it, and stops it at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from serverenv import free_loopback_port

from cluster.jobs import ClusterAuthError, JobsClient
from stratmaster.cli import main
from stratmaster.settings import get_settings

pytestmark = [
    pytest.mark.cluster,
    # Ray's job SDK opens the log websocket with aiohttp's deprecated ssl=None.
    pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning"),
]

RAY = Path(sys.executable).parent / "ray"


@dataclass
class Head:
    dashboard: str
    process: subprocess.Popen
    folder: Path


def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    # The token `stratmaster up` (ray.init) would use; `ray get-auth-token --generate`
    # creates ~/.ray/auth_token the way ray.init does when there is none yet.
    token = subprocess.run([str(RAY), "get-auth-token", "--generate"], capture_output=True, text=True,
                           check=True, timeout=60).stdout.strip()
    folder = Path(tempfile.mkdtemp(prefix="smjob", dir="/tmp"))  # Ray's socket paths must stay short
    dashboard_port = free_loopback_port()
    ports = {name: free_loopback_port() for name in (
        "port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
        "metrics-export-port", "node-manager-port", "object-manager-port", "ray-client-server-port")}
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(name, None)
    command = [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--include-dashboard=true",
               "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
               *(f"--{name}={port}" for name, port in ports.items()),
               "--num-cpus=2", "--object-store-memory=100000000", f"--temp-dir={folder / 'ray'}",
               "--disable-usage-stats"]
    output = (folder / "head.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    running = Head(f"http://127.0.0.1:{dashboard_port}", process, folder)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"ray start exited with {process.returncode}: {(folder / 'head.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{running.dashboard}/api/version", headers={"Authorization": f"Bearer {token}"},
                             timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no dashboard at {running.dashboard} after 120 s")
            time.sleep(0.5)
        yield running
    finally:
        started = _descendants(process.pid)
        process.send_signal(signal.SIGTERM)  # `ray start --block` stops its node on SIGTERM
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        for child in started:  # only what this head started, by pid
            if child.is_running():
                child.kill()
        output.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def ray_address(monkeypatch, head: Head) -> str:
    """RAY_ADDRESS points at the test head: commands without --address go there."""
    monkeypatch.setenv("RAY_ADDRESS", head.dashboard)
    get_settings.cache_clear()
    yield head.dashboard
    get_settings.cache_clear()


def test_a_job_runs_in_an_uploaded_working_dir_and_is_followed_to_success(ray_address, tmp_path, capsys):
    (tmp_path / "hello_job.py").write_text("import os\nprint('cwd has', sorted(os.listdir('.')))\n"
                                           "print('hello from a job')\n")
    code = main(["job", "submit", "--working-dir", str(tmp_path), "--metadata", "purpose=integration-test",
                 "--", sys.executable, "hello_job.py"])
    out, err = capsys.readouterr()
    assert code == 0, err
    submission_id = out.splitlines()[0]
    assert submission_id.startswith("raysubmit_")
    assert "cwd has ['hello_job.py']" in out and "hello from a job" in out
    assert f"job {submission_id} SUCCEEDED" in err

    assert main(["job", "status", submission_id]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["status"], status["driver_exit_code"]) == ("SUCCEEDED", 0)
    assert status["metadata"]["purpose"] == "integration-test"
    assert status["end_time"] >= status["start_time"] > 0

    assert main(["job", "logs", submission_id, "--tail", "1"]) == 0
    assert capsys.readouterr().out == "hello from a job\n"


def test_a_failing_job_exits_1_and_reports_its_exit_code(ray_address, capsys):
    code = main(["job", "submit", "--", sys.executable, "-c", "import sys; print('about to fail'); sys.exit(3)"])
    out, err = capsys.readouterr()
    assert code == 1
    submission_id = out.splitlines()[0]
    assert "about to fail" in out and f"job {submission_id} FAILED" in err
    assert main(["job", "status", submission_id]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["status"], status["driver_exit_code"]) == ("FAILED", 3)


def test_a_long_job_is_stopped(ray_address, capsys):
    sleeper = "import time; print('sleeping', flush=True); time.sleep(600)"
    submission_id = f"sleeper-{os.getpid()}-{int(time.time())}"
    assert main(["job", "submit", "--no-wait", "--submission-id", submission_id,
                 "--", sys.executable, "-c", sleeper]) == 0
    assert capsys.readouterr().out == f"{submission_id}\n"

    client = JobsClient(ray_address)
    deadline = time.monotonic() + 60
    while "sleeping" not in client.logs(submission_id):
        assert time.monotonic() < deadline, f"the job never started: {client.info(submission_id)}"
        time.sleep(0.5)
    assert client.status(submission_id) == "RUNNING"

    assert main(["job", "stop", submission_id]) == 0
    assert capsys.readouterr().out == f"job {submission_id} STOPPED\n"
    assert main(["job", "stop", submission_id]) == 0
    assert "already ended: STOPPED" in capsys.readouterr().out

    assert main(["job", "list"]) == 0
    listed = {job["submission_id"]: job["status"] for job in json.loads(capsys.readouterr().out)}
    assert listed[submission_id] == "STOPPED"
    assert list(listed.values()).count("SUCCEEDED") >= 1


def test_an_unknown_job_id_is_named(ray_address, capsys):
    for command in (["status"], ["logs"], ["logs", "--follow"], ["stop"]):
        assert main(["job", *command[:1], "raysubmit_nosuchjob", *command[1:]]) == 1
        assert "no job 'raysubmit_nosuchjob' on the cluster at" in capsys.readouterr().err


def test_a_fresh_shell_without_ray_auth_mode_sends_the_local_token(head):
    # Ray's client alone sends the token only with RAY_AUTH_MODE=token; a user's shell has none.
    env = {name: value for name, value in os.environ.items()
           if name not in ("RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["RAY_ADDRESS"] = head.dashboard
    done = subprocess.run([sys.executable, "-m", "stratmaster.cli", "job", "list"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list)


def test_a_wrong_token_is_refused_with_a_readable_message(head):
    with pytest.raises(ClusterAuthError, match="rejected the auth token"):
        JobsClient(head.dashboard, headers={"Authorization": "Bearer not-this-clusters-token"})


def _loopback(ip: str) -> bool:
    import ipaddress

    address = ipaddress.ip_address(ip.split("%")[0])
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def test_no_process_of_the_head_listens_off_loopback(head):
    import psutil

    # After the jobs above: job supervisors and workers have come and gone on this node.
    ours = {p.pid for p in _descendants(head.process.pid)} | {head.process.pid}
    exposed = [(c.laddr.ip, c.laddr.port, psutil.Process(c.pid).name())
               for c in psutil.net_connections(kind="inet")
               if c.status == psutil.CONN_LISTEN and c.pid in ours and not _loopback(c.laddr.ip)]
    assert exposed == [], exposed
