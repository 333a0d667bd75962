"""`stratmaster` command line: up, status, token, migrate, evals, job.

`up` and `job` are the only commands that touch Ray; they import the cluster glue lazily so
that `token`, `status`, `migrate` and `evals` start instantly and work without a cluster.
"""

from __future__ import annotations

import os

# Read by Ray when it is imported, not when it starts: without it a local node binds to
# the machine's external address. Set before anything here can import ray.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from stratmaster.settings import ConfigurationError, Settings, load_settings  # noqa: E402

if TYPE_CHECKING:
    from cluster.jobs import JobsClient


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from cluster.local import PlatformStartError, start_platform
    from stratmaster.logs import configure_logging

    configure_logging("cli", settings.log_level)
    # Installed before starting, and explicitly: a process started in the background by a
    # script inherits an ignored SIGINT, and a signal during start-up must still stop it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    print(f"starting StratMaster on {settings.http_host}:{settings.http_port} "
          f"(backends: {json.dumps({k: v['backend'] for k, v in settings.backends().items()})})", flush=True)
    platform = None
    try:
        platform = start_platform(settings, config_path=args.config, migrate=not args.no_migrate,
                                  dashboard=not args.no_dashboard, timeout_s=args.timeout)
        print(json.dumps({
            "status": "healthy", "healthy_after_s": platform.healthy_after_s, "url": platform.base_url,
            "docs": f"{platform.base_url}/docs", "metrics": platform.metrics_url,
            "dashboard": platform.dashboard_url, "ray_session": str(platform.session_dir),
        }), flush=True)
        print("get a token with: stratmaster token --tenant acme --role analyst; Ctrl-C stops", flush=True)
        threading.Event().wait()
    except PlatformStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("shutting down ...", flush=True)
        if platform is not None:
            platform.stop()
        print("stopped", flush=True)
    return 0


def _cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    import httpx

    base = args.url or f"http://{settings.http_host}:{settings.http_port}"
    report: dict[str, object] = {"url": base}
    healthy = True
    for path in ("/healthz", "/health/database", "/health/redis", "/health/services"):
        try:
            answer = httpx.get(base + path, timeout=args.timeout)
            report[path] = answer.json()
            healthy &= answer.status_code == 200
        except (httpx.HTTPError, ValueError) as exc:
            report[path] = {"status": "unreachable", "detail": str(exc)}
            healthy = False
    report["status"] = "healthy" if healthy else "unhealthy"
    print(json.dumps(report, indent=2))
    return 0 if healthy else 1


def _cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from stratmaster.identity import LocalIssuer

    if settings.keycloak_url:
        print("error: KEYCLOAK_URL is set; tokens come from Keycloak, not the local issuer", file=sys.stderr)
        return 2
    issuer = LocalIssuer(settings.keys_dir, audience=settings.token_audience)
    try:
        token = issuer.issue(subject=args.subject or f"{args.tenant}-{args.role[0]}", tenant=args.tenant,
                             roles=tuple(args.role), ttl_s=args.ttl or settings.token_ttl_s)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from stratmaster.db.migrate import run_migrate_command

    return run_migrate_command(args.migrate_args)


def _cmd_evals_ir(settings: Settings, args: argparse.Namespace) -> int:
    from stratmaster.evals.ir_metrics import DEFAULT_MEASURES, evaluate, read_qrels, read_run

    measures = [m for m in (part.strip() for part in args.measures.split(",")) if m] if args.measures \
        else DEFAULT_MEASURES
    try:
        report = evaluate(read_qrels(args.qrels), read_run(args.run_file), measures,
                          relevance_level=args.relevance_level)
    except (OSError, ValueError) as exc:  # TrecFormatError is a ValueError naming file and line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


def _cmd_evals_rag(settings: Settings, args: argparse.Namespace) -> int:
    from stratmaster.evals.datasets import DatasetFormatError
    from stratmaster.evals.rag_cases import read_rag_cases, score_cases
    from stratmaster.evals.rag_metrics import SUPPORT_THRESHOLD

    threshold = SUPPORT_THRESHOLD if args.threshold is None else args.threshold
    if not 0 < threshold <= 1:
        print(f"error: --threshold must be in (0, 1], got {threshold}", file=sys.stderr)
        return 2
    try:
        cases = read_rag_cases(args.cases)
    except (OSError, DatasetFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    embed = None
    if not args.no_relevancy:
        from stratmaster.knowledge.embedding import AssetError
        from stratmaster.knowledge.onnx_embedding import OnnxEmbedder

        try:
            embed = OnnxEmbedder(settings.data_dir / "models").embed
        except AssetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    report = {"cases_file": str(args.cases), **score_cases(cases, embed, threshold)}
    print(json.dumps(report, indent=2))
    return 0


def _cmd_evals_gate(settings: Settings, args: argparse.Namespace) -> int:
    from stratmaster.evals.gates import (
        DEFAULT_THRESHOLDS,
        GateSetError,
        ThresholdsError,
        evaluate_gates,
        format_table,
        load_thresholds,
        select_gate_set,
    )

    thresholds = args.thresholds or DEFAULT_THRESHOLDS
    try:
        result = json.loads(Path(args.result).read_text(encoding="utf-8"))
        name, gates = select_gate_set(load_thresholds(thresholds), result, args.set)
    except json.JSONDecodeError as exc:
        print(f"error: {args.result}: not valid JSON: {exc}", file=sys.stderr)
        return 2
    except (OSError, ThresholdsError, GateSetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = evaluate_gates(gates, result)
    failed = any(r.failed for r in results)
    if args.json:
        print(json.dumps({"result": str(args.result), "thresholds": str(thresholds), "set": name,
                          "passed": not failed, "gates": [r.as_dict() for r in results]}, indent=2))
    else:
        print(f"gate set {name!r} from {thresholds} on {args.result}")
        print(format_table(results))
    return 1 if failed else 0


# --- job: Ray Jobs on RAY_ADDRESS or the local platform (cluster/jobs.py) ------------------
JobCommand = Callable[["JobsClient", argparse.Namespace], int]


def _job_command(command: JobCommand, check: Callable[[argparse.Namespace], str | None] | None = None,
                 ) -> Callable[[Settings, argparse.Namespace], int]:
    """Wrap a job subcommand: 2 on bad arguments or when no cluster is usable, 1 on other job errors."""
    def run(settings: Settings, args: argparse.Namespace) -> int:
        from cluster.jobs import ClusterUnavailableError, JobClientError, JobsClient, quiet_ray_sdk_logs

        problem = check(args) if check else None
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        quiet_ray_sdk_logs()
        try:
            return command(JobsClient.connect(args.address, settings), args)
        except ClusterUnavailableError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except JobClientError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run


def job_entrypoint(words: Sequence[str]) -> str:
    """The shell command a job runs from the words after `--`: one word is taken as written
    (it may hold shell syntax), several are quoted as the separate arguments they are."""
    import shlex

    words = list(words[1:] if words and words[0] == "--" else words)
    return words[0] if len(words) == 1 else shlex.join(words)


def _metadata_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"wants KEY=VALUE, got {text!r}")
    return key.strip(), value


def _check_submit(args: argparse.Namespace) -> str | None:
    if not job_entrypoint(args.entrypoint).strip():
        return "no entrypoint: stratmaster job submit [options] -- COMMAND [ARG...]"
    if args.working_dir is not None and not args.working_dir.is_dir():
        return f"--working-dir {str(args.working_dir)!r} is not a directory"
    return None


def _follow_to_end(client: JobsClient, submission_id: str) -> int:
    """Stream a job's output until it ends; 0 if it succeeded, 1 if it failed or was stopped."""
    try:
        for chunk in client.follow_logs(submission_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()
        # The stream closes as the job ends; its final status lands a moment later.
        info = client.wait(submission_id, timeout_s=30)
    except KeyboardInterrupt:
        print(f"\nstopped following; job {submission_id} keeps running "
              f"(stratmaster job stop {submission_id})", file=sys.stderr)
        return 130
    print(f"job {submission_id} {info.status}: {info.message or ''}".rstrip(), file=sys.stderr)
    return 0 if info.status == "SUCCEEDED" else 1


def _job_submit(client: JobsClient, args: argparse.Namespace) -> int:
    submission_id = client.submit(job_entrypoint(args.entrypoint), working_dir=args.working_dir,
                                  submission_id=args.submission_id, metadata=dict(args.metadata))
    print(submission_id, flush=True)
    return 0 if args.no_wait else _follow_to_end(client, submission_id)


def _job_status(client: JobsClient, args: argparse.Namespace) -> int:
    print(json.dumps(client.info(args.job_id).to_dict(), indent=2))
    return 0


def _job_logs(client: JobsClient, args: argparse.Namespace) -> int:
    if args.follow:
        _follow_to_end(client, args.job_id)
    else:
        sys.stdout.write(client.logs(args.job_id, tail=args.tail))
    return 0


def _job_stop(client: JobsClient, args: argparse.Namespace) -> int:
    if not client.stop(args.job_id):
        print(f"job {args.job_id} had already ended: {client.status(args.job_id)}")
    elif args.no_wait:
        print(f"job {args.job_id} asked to stop")
    else:
        print(f"job {args.job_id} {client.wait(args.job_id, timeout_s=args.timeout).status}")
    return 0


def _job_list(client: JobsClient, args: argparse.Namespace) -> int:
    print(json.dumps([job.to_dict() for job in client.list()], indent=2))
    return 0


def _add_job_commands(commands: argparse._SubParsersAction) -> None:
    cluster = argparse.ArgumentParser(add_help=False)
    cluster.add_argument("--address", default=None,
                         help="Ray dashboard URL (default: RAY_ADDRESS, else http://127.0.0.1:8265)")
    job = commands.add_parser("job", help="Ray Jobs on RAY_ADDRESS or the local platform's cluster")
    job_commands = job.add_subparsers(dest="job_command", required=True)

    submit = job_commands.add_parser(
        "submit", parents=[cluster], help="submit a command as a Ray job; print its id, follow it to the end",
        description="Prints the submission id, then follows the job's output; exits 0 if it SUCCEEDED, 1 if it "
                    "FAILED or was STOPPED, 2 if no cluster answers. One ENTRYPOINT word runs as written (shell "
                    "syntax allowed); several are quoted as separate arguments.")
    submit.add_argument("--working-dir", type=Path, default=None, help="folder uploaded as the job's working dir")
    submit.add_argument("--submission-id", default=None, help="default: generated by Ray")
    submit.add_argument("--metadata", action="append", default=[], type=_metadata_pair, metavar="KEY=VALUE",
                        help="repeatable; stored with the job")
    submit.add_argument("--no-wait", action="store_true", help="print the id and return at once")
    submit.add_argument("entrypoint", nargs=argparse.REMAINDER, metavar="-- ENTRYPOINT...")
    submit.set_defaults(run=_job_command(_job_submit, _check_submit))

    status = job_commands.add_parser("status", parents=[cluster], help="a job's status and details, as JSON")
    status.add_argument("job_id")
    status.set_defaults(run=_job_command(_job_status))

    logs = job_commands.add_parser("logs", parents=[cluster], help="a job's output so far")
    logs.add_argument("job_id")
    how = logs.add_mutually_exclusive_group()
    how.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
    how.add_argument("--tail", type=int, default=None, metavar="N", help="only the last N lines")
    logs.set_defaults(run=_job_command(_job_logs))

    stop = job_commands.add_parser("stop", parents=[cluster], help="stop a job (SIGTERM, then SIGKILL)")
    stop.add_argument("job_id")
    stop.add_argument("--no-wait", action="store_true", help="return once asked, not once stopped")
    stop.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it to stop")
    stop.set_defaults(run=_job_command(_job_stop))

    listing = job_commands.add_parser("list", parents=[cluster], help="every job the cluster knows, as JSON")
    listing.set_defaults(run=_job_command(_job_list))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stratmaster", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start local Ray + every Serve application; foreground until Ctrl-C")
    up.add_argument("--config", type=Path, default=None, help="Serve config (default configs/serve.yaml)")
    up.add_argument("--no-migrate", action="store_true", help="skip database migrations before start")
    up.add_argument("--no-dashboard", action="store_true", help="start Ray without its dashboard (no job submission)")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for healthy")
    up.set_defaults(run=_cmd_up)

    status = commands.add_parser("status", help="health of a running platform")
    status.add_argument("--url", default=None, help="gateway URL (default from settings)")
    status.add_argument("--timeout", type=float, default=10.0)
    status.set_defaults(run=_cmd_status)

    token = commands.add_parser("token", help="print a token signed by the local issuer")
    token.add_argument("--tenant", required=True)
    token.add_argument("--role", action="append", required=True, help="repeatable: admin, analyst, viewer, service")
    token.add_argument("--subject", default=None, help="default: <tenant>-<first role>")
    token.add_argument("--ttl", type=int, default=None, help="seconds (default STRATMASTER_TOKEN_TTL_S)")
    token.set_defaults(run=_cmd_token)

    migrate = commands.add_parser("migrate", help="database migrations: upgrade | status | downgrade")
    migrate.add_argument("migrate_args", nargs=argparse.REMAINDER)
    migrate.set_defaults(run=_cmd_migrate)

    evals = commands.add_parser("evals", help="offline evaluation: IR metrics, RAG metrics, quality gates")
    evals_commands = evals.add_subparsers(dest="evals_command", required=True)
    ir = evals_commands.add_parser("ir", help="IR metrics of a TREC run against TREC qrels, as JSON")
    ir.add_argument("--qrels", type=Path, required=True, help="'query_id iteration doc_id relevance' lines")
    ir.add_argument("--run", dest="run_file", type=Path, required=True,
                    help="'query_id Q0 doc_id rank score tag' lines")
    ir.add_argument("--measures", default=None, help="comma-separated, e.g. nDCG@10,MAP@100,P@5 "
                                                     "(default nDCG@10,MAP@100,Recall@100,MRR@10)")
    ir.add_argument("--relevance-level", type=int, default=1, help="lowest grade counted relevant (trec_eval -l)")
    ir.set_defaults(run=_cmd_evals_ir)

    rag = evals_commands.add_parser("rag", help="RAG metrics of JSONL eval cases, per case and mean, as JSON")
    rag.add_argument("--cases", type=Path, required=True, help="JSONL, a case a line (stratmaster/evals/rag_cases.py)")
    rag.add_argument("--threshold", type=float, default=None,
                     help="least content-term coverage that supports a sentence (default 0.6)")
    rag.add_argument("--no-relevancy", action="store_true", help="skip answer relevancy (no embedding model loaded)")
    rag.set_defaults(run=_cmd_evals_rag)

    gate = evals_commands.add_parser("gate", help="check a result JSON against metric floors and ceilings; "
                                                  "exit 1 when a gate fails, 2 on bad input")
    gate.add_argument("result", type=Path, help="result JSON (benchmark, sweep, `evals rag` output)")
    gate.add_argument("--thresholds", type=Path, default=None, help="default configs/evals/thresholds.yaml")
    gate.add_argument("--set", default=None, help="gate set to apply (default: the result's \"kind\" field)")
    gate.add_argument("--json", action="store_true", help="print the gates as JSON instead of a table")
    gate.set_defaults(run=_cmd_evals_gate)

    _add_job_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return args.run(settings, args)


if __name__ == "__main__":
    sys.exit(main())
