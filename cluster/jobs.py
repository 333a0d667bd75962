"""Ray Jobs on a cluster: submit, follow, inspect, stop and list jobs through its dashboard.

A thin typed wrapper over `ray.job_submission.JobSubmissionClient` that settles what
Ray's client leaves to the caller:

- Which cluster. An explicit address wins, then `RAY_ADDRESS` (read by `Settings`), then
  the local platform's dashboard at http://127.0.0.1:8265. Ray's own constructor lets the
  RAY_ADDRESS / RAY_API_SERVER_ADDRESS variables replace an explicit address; ours
  connects to the address it resolved, and only to a dashboard's http(s) address.
- Authentication. Ray 2.60 turns token auth on for a cluster started by `ray.init()`
  (so for `stratmaster up`) and keeps the token in ~/.ray/auth_token (or RAY_AUTH_TOKEN,
  RAY_AUTH_TOKEN_PATH). Ray's client sends it only when *this* process runs with
  RAY_AUTH_MODE=token, which a shell running `stratmaster job` usually does not, so its
  requests would be refused with 401. To a loopback address we send the token Ray's loader
  finds whatever the mode: it is this machine's own cluster. To any other host we send
  only what Ray itself would (RAY_AUTH_MODE=token and a token), never the local token.
- Errors. An unusable address, an unreachable dashboard, a refused token and an unknown
  job id each raise a `JobClientError` subclass whose message says what to do.

Ray is imported on first connect, not with this module: the CLI stays fast, and importing
it here cannot fix RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER before an entry point has set it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stratmaster.settings import Settings

DEFAULT_DASHBOARD_ADDRESS = "http://127.0.0.1:8265"
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


class JobClientError(RuntimeError):
    """A job command failed; the message is meant for a person."""


class ClusterUnavailableError(JobClientError):
    """No usable cluster at the address: not a dashboard address, unreachable, or refused."""


class ClusterAuthError(ClusterUnavailableError):
    """The dashboard wants a Ray auth token that was not sent, or rejected the one sent."""


class JobNotFoundError(JobClientError):
    """The cluster knows no job by that id."""


@dataclass(frozen=True)
class JobInfo:
    """One job as the dashboard reports it; times in seconds since the epoch."""

    submission_id: str | None  # None for a driver that ran ray.init() itself
    job_id: str | None
    type: str
    status: str
    entrypoint: str
    message: str | None = None
    start_time: float | None = None
    end_time: float | None = None
    driver_exit_code: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_details(cls, details: Any) -> JobInfo:
        def seconds(ms: int | None) -> float | None:
            return ms / 1000 if ms else None

        return cls(
            submission_id=details.submission_id, job_id=details.job_id, type=_value(details.type),
            status=_value(details.status), entrypoint=details.entrypoint or "", message=details.message,
            start_time=seconds(details.start_time), end_time=seconds(details.end_time),
            driver_exit_code=details.driver_exit_code, metadata=dict(details.metadata or {}),
        )


def _value(member: Any) -> str:
    return str(getattr(member, "value", member))


def resolve_address(address: str | None = None, settings: Settings | None = None) -> str:
    """The dashboard URL to use: `address`, else RAY_ADDRESS from settings, else the local one."""
    if address:
        return dashboard_url(address, "--address")
    if settings is not None and settings.ray_address:
        return dashboard_url(settings.ray_address, "RAY_ADDRESS")
    return DEFAULT_DASHBOARD_ADDRESS


def dashboard_url(address: str, source: str = "address") -> str:
    """Normalise a dashboard address; refuse Ray's other address forms with a hint."""
    value = address.strip().rstrip("/")
    hint = "job commands talk to the Ray dashboard: give its HTTP address, e.g. http://127.0.0.1:8265"
    if "://" not in value:
        # Ray's grammar: host:port is the cluster's GCS (what Ray sets inside a job), and
        # 'auto' / 'local' find or start a cluster. None of them is the dashboard.
        raise ClusterUnavailableError(f"{source}={value!r} is a Ray cluster address, not a dashboard URL; {hint}")
    parts = urlsplit(value)
    if parts.scheme == "ray":
        raise ClusterUnavailableError(f"{source}={value!r} is a Ray Client address; {hint} "
                                      "(usually the same host, port 8265)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClusterUnavailableError(f"{source}={value!r} is not an http(s) URL; {hint}")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ClusterUnavailableError(f"{source}={value!r} has an invalid port; {hint}") from None
    return value


def is_loopback(address: str) -> bool:
    """True for a URL whose host is this machine (localhost or a loopback IP)."""
    host = urlsplit(address).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_token_headers() -> dict[str, str]:
    """The Authorization header for the token Ray finds on this machine, if any, whatever RAY_AUTH_MODE says."""
    from ray._raylet import AuthenticationTokenLoader

    return dict(AuthenticationTokenLoader.instance().get_token_for_http_header(ignore_auth_mode=True))


def auth_headers(address: str) -> dict[str, str]:
    """Headers we add for `address`: the local token for a loopback dashboard, nothing otherwise."""
    return local_token_headers() if is_loopback(address) else {}


def quiet_ray_sdk_logs() -> None:
    """Keep Ray's job SDK from logging routine INFO lines (websocket closed, ...) to stderr.

    Its modules set their loggers to INFO when imported, so import them first.
    """
    import logging

    from ray.dashboard.modules import dashboard_sdk
    from ray.dashboard.modules.job import sdk

    for module in (dashboard_sdk, sdk):
        logging.getLogger(module.__name__).setLevel(logging.WARNING)


@functools.cache
def _client_class() -> type:
    import ray
    from ray.dashboard.modules.dashboard_sdk import SubmissionClient
    from ray.job_submission import JobSubmissionClient

    class PinnedJobSubmissionClient(JobSubmissionClient):
        """JobSubmissionClient that talks to the given address, with request timeouts.

        JobSubmissionClient.__init__ resolves its address through environment variables
        that override the argument; this one skips that step and runs the same checks.
        """

        def __init__(self, address: str, headers: dict[str, str], timeout: tuple[float, float]) -> None:
            self._client_ray_version = ray.__version__
            self._timeout = timeout
            SubmissionClient.__init__(self, address=address, headers=headers)
            self._check_connection_and_version(
                min_version="2.0",
                version_error_message=f"the cluster must run Ray 2.0 or later (this client: Ray {ray.__version__})")

        def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
            # requests waits forever by default; a silent host must not hang the CLI.
            kwargs.setdefault("timeout", self._timeout)
            return super()._do_request(method, endpoint, **kwargs)

    return PinnedJobSubmissionClient


class JobsClient:
    """Jobs on one Ray cluster, reached through its dashboard.

    `headers` replaces the auth headers we would add (see the module docstring); Ray still
    adds its own token when this process runs with RAY_AUTH_MODE=token and none is given.
    The pinned client leans on JobSubmissionClient's private helpers; tests/unit/test_cli_jobs.py
    notices if a Ray upgrade moves them.
    """

    def __init__(self, address: str, *, connect_timeout_s: float = 10.0, read_timeout_s: float = 120.0,
                 headers: Mapping[str, str] | None = None) -> None:
        self.address = dashboard_url(address)
        sent = dict(auth_headers(self.address) if headers is None else headers)
        with self._translated():
            self._client = _client_class()(self.address, sent, (connect_timeout_s, read_timeout_s))

    @classmethod
    def connect(cls, address: str | None = None, settings: Settings | None = None, **kwargs: Any) -> JobsClient:
        """Connect to `address`, else RAY_ADDRESS, else the local platform's dashboard."""
        return cls(resolve_address(address, settings), **kwargs)

    # --- commands ------------------------------------------------------------------
    def submit(self, entrypoint: str, *, working_dir: Path | str | None = None,
               runtime_env: Mapping[str, Any] | None = None, submission_id: str | None = None,
               metadata: Mapping[str, str] | None = None) -> str:
        """Submit a shell command as a job; returns its submission id.

        `working_dir` is uploaded and becomes the job's working directory (Ray skips what
        .gitignore lists); it is shorthand for runtime_env={"working_dir": ...}.
        """
        if not entrypoint.strip():
            raise JobClientError("the entrypoint is empty")
        env = dict(runtime_env or {})
        if working_dir is not None:
            folder = Path(working_dir).expanduser()
            if not folder.is_dir():
                raise JobClientError(f"working dir {str(folder)!r} is not a directory")
            if "working_dir" in env:
                raise JobClientError("give the working dir either as working_dir or in runtime_env, not both")
            env["working_dir"] = str(folder.resolve())
        with self._translated(submission_id):
            return self._client.submit_job(entrypoint=entrypoint, runtime_env=env or None,
                                           submission_id=submission_id, metadata=dict(metadata or {}) or None)

    def info(self, job_id: str) -> JobInfo:
        with self._translated(job_id):
            return JobInfo.from_details(self._client.get_job_info(job_id))

    def status(self, job_id: str) -> str:
        return self.info(job_id).status

    def logs(self, job_id: str, *, tail: int | None = None) -> str:
        """The job's output so far; with `tail`, only its last `tail` lines."""
        with self._translated(job_id):
            text = self._client.get_job_logs(job_id)
        if tail is None:
            return text
        lines = text.splitlines(keepends=True)
        return "".join(lines[-tail:]) if tail > 0 else ""

    def follow_logs(self, job_id: str) -> Iterator[str]:
        """The job's output from the start, chunk by chunk as it is written, until the job ends."""
        self.info(job_id)  # an unknown id fails here, with a clear message, not in the websocket handshake
        loop = asyncio.new_event_loop()
        chunks = self._client.tail_job_logs(job_id)
        try:
            while True:
                with self._translated(job_id):
                    try:
                        chunk = loop.run_until_complete(chunks.__anext__())
                    except StopAsyncIteration:
                        return
                yield chunk
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(chunks.aclose())
            loop.close()

    def wait(self, job_id: str, *, timeout_s: float | None = None, poll_s: float = 0.5) -> JobInfo:
        """Poll until the job ends; JobClientError if it is still going after `timeout_s`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            info = self.info(job_id)
            if info.terminal:
                return info
            if deadline is not None and time.monotonic() >= deadline:
                raise JobClientError(f"job {job_id} is still {info.status} after {timeout_s:.0f} s")
            time.sleep(poll_s)

    def stop(self, job_id: str) -> bool:
        """Ask the job to stop (SIGTERM, then SIGKILL); False if it had already ended."""
        with self._translated(job_id):
            return bool(self._client.stop_job(job_id))

    def list(self) -> list[JobInfo]:
        """Every job the cluster remembers, oldest first."""
        with self._translated():
            jobs = [JobInfo.from_details(details) for details in self._client.list_jobs()]
        return sorted(jobs, key=lambda job: job.start_time or 0.0)

    # --- errors --------------------------------------------------------------------
    @contextlib.contextmanager
    def _translated(self, job_id: str | None = None) -> Iterator[None]:
        """Turn requests' and Ray's exceptions into JobClientErrors that say what to do."""
        import aiohttp
        import requests
        from ray.exceptions import AuthenticationError

        try:
            yield
        except JobClientError:
            raise
        except AuthenticationError as exc:
            raise ClusterAuthError(self._auth_message(str(exc))) from None
        except (requests.exceptions.RequestException, aiohttp.ClientConnectionError, ConnectionError) as exc:
            raise ClusterUnavailableError(
                f"no Ray dashboard answers at {self.address} ({type(exc).__name__}): start the platform with "
                "`stratmaster up` (dashboard on), or point --address / RAY_ADDRESS at a cluster's dashboard"
            ) from None
        except aiohttp.ClientError as exc:  # the log stream's websocket
            raise JobClientError(f"{self.address}: log stream failed: {exc}") from None
        except RuntimeError as exc:
            text = str(exc)
            if "status code 404" in text and job_id is not None:
                raise JobNotFoundError(f"no job {job_id!r} on the cluster at {self.address}") from None
            if "Version check returned 404" in text:
                raise ClusterUnavailableError(f"{self.address} answers, but not as a Ray dashboard") from None
            raise JobClientError(f"{self.address}: {text}") from None

    def _auth_message(self, ray_message: str) -> str:
        where = f"the Ray cluster at {self.address}"
        if ray_message.startswith("Authentication failed"):
            return (f"{where} rejected the auth token sent (is it another cluster's?): set RAY_AUTH_TOKEN or "
                    "RAY_AUTH_TOKEN_PATH to this cluster's token")
        if is_loopback(self.address):
            return (f"{where} requires an auth token and none was found on this machine "
                    "(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)")
        return (f"{where} requires an auth token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH)"
                "; this machine's own token is only sent to loopback addresses")
