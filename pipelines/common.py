"""What every pipeline shares: Ray start-up, embedders, index snapshots, config loading, work folders.

Pipelines run on the machine's local Ray (a fresh `address="local"` cluster) or, inside
`ray job submit` or with RAY_ADDRESS set, on that cluster. Work that outlives a run but
is not a result (index snapshots, the embedding cache) goes under
`STRATMASTER_DATA_DIR/pipelines/<pipeline>/<name>`; results go where the config says.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read when ray is imported
# One BLAS thread per process, read when numpy loads: a task holds one CPU (num_cpus=1), and
# OpenBLAS's spinning threads would take the CPU of the task beside it. Ray's workers inherit
# it from this driver; `--sequential` runs its cells on the same single thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any, TypeVar  # noqa: E402

from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from stratmaster.evals.ir_metrics import DEFAULT_MEASURES  # noqa: E402
from stratmaster.settings import ConfigurationError, load_yaml_model  # noqa: E402

Config = TypeVar("Config", bound=BaseModel)
# A run's name names its folders: lower case, digits, "-" and "_".
RunName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]


class PipelineConfig(BaseModel):
    """What every retrieval pipeline's config names: which run, on which dataset, measured how."""

    model_config = ConfigDict(extra="forbid")

    name: RunName
    dataset: Path
    split: str = "test"
    k: int = Field(100, ge=1, le=100)
    measures: list[str] = list(DEFAULT_MEASURES)
    embedding_precision: str = Field("int8", pattern="^(fp32|int8)$")


def init_ray() -> None:
    import ray

    from stratmaster.settings import load_settings

    if ray.is_initialized():
        return
    if load_settings().ray_address:  # inside `ray job submit` (Ray sets it), or pointed at a cluster
        ray.init(address="auto", logging_level="WARNING")
    else:
        ray.init(address="local", include_dashboard=False, logging_level="WARNING")


def load_config(path: Path, model: type[Config]) -> Config:
    """A YAML config validated by `model`; a relative `dataset` is taken from the file's folder
    when it exists there, else from the working directory. Errors name the file and field."""

    def resolve_dataset(raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("dataset"), str) and not Path(raw["dataset"]).is_absolute():
            beside = path.parent / raw["dataset"]
            raw["dataset"] = str(beside.resolve() if beside.exists() else Path(raw["dataset"]).resolve())
        return raw

    try:
        return load_yaml_model(path, model, prepare=resolve_dataset)
    except ConfigurationError as exc:
        raise SystemExit(str(exc)) from None


def _tenant(value: str) -> str:
    from stratmaster.stores.objects import validate_tenant

    try:
        return validate_tenant(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def argument_parser(prog: str, doc: str | None, example: str) -> argparse.ArgumentParser:
    """The arguments every pipeline takes: --config FILE, --output-dir DIR and --tenant NAME."""
    parser = argparse.ArgumentParser(prog=prog, description=(doc or prog).splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help=f"a YAML config, e.g. {example}")
    parser.add_argument("--output-dir", type=Path, help="overrides the config's output_dir")
    parser.add_argument("--tenant", type=_tenant, default=None,
                        help="also record the finished result as this tenant's eval run (GET /evals/runs lists it), "
                             "in the platform's database (DATABASE_URL, else STRATMASTER_DATA_DIR's SQLite)")
    return parser


class RecordError(RuntimeError):
    """The result could not be stored as an eval run (database unreachable or not migrated)."""


def job_submission_id() -> str | None:
    """The Ray job's submission id when this driver runs under `ray job submit` (Ray passes it in the job config)."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return None
    try:
        metadata = json.loads(raw).get("metadata") or {}
    except (ValueError, AttributeError):
        return None
    found = metadata.get("job_submission_id")
    return found if isinstance(found, str) else None


def record_run(tenant: str, kind: str, config: BaseModel, result: dict[str, Any], progress_folder: Path) -> str:
    """Store a finished pipeline's result, with its gate table, as the tenant's eval run; its id.

    The evals service's own table, so the API lists runs started by hand or as jobs beside
    those it started. Raises RecordError naming the database and the fix when it cannot.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from stratmaster.db.engine import create_db_engine
    from stratmaster.evals.gates import gate_table
    from stratmaster.evals.runs import EvalRunRepository
    from stratmaster.settings import load_settings

    settings = load_settings()
    engine = create_db_engine(settings.effective_database_url)
    try:
        run = EvalRunRepository(engine).record(
            tenant, kind, config.name, config.model_dump(mode="json", exclude={"output_dir"}),  # type: ignore[attr-defined]
            result, gate_table(result), submission_id=job_submission_id(),
            progress=read_json(progress_folder / "progress.json"))
    except SQLAlchemyError as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise RecordError(f"result not recorded as an eval run in {where}: {exc.__class__.__name__}: "
                          f"{str(exc).splitlines()[0]} (is the database migrated? `stratmaster migrate upgrade`; "
                          f"`stratmaster up` migrates on start)") from None
    finally:
        engine.dispose()
    return run.id


def finish(args: argparse.Namespace, kind: str, config: BaseModel, result: dict[str, Any], folder: Path) -> int:
    """Record the result when --tenant asks for it; the exit status (2 when it could not be recorded)."""
    if args.tenant is None:
        return 0
    try:
        run_id = record_run(args.tenant, kind, config, result, folder)
    except RecordError as exc:
        print(f"{kind}: {exc}", file=sys.stderr)
        return 2
    print(f"recorded as eval run {run_id} of tenant {args.tenant} (GET /evals/runs/{run_id})")
    return 0


def with_output_dir(config: Config, output_dir: Path | None) -> Config:
    return config if output_dir is None else config.model_copy(update={"output_dir": output_dir})


def work_dir(pipeline: str, name: str) -> Path:
    """Index snapshots and the embedding cache: reusable across runs, not results."""
    from stratmaster.settings import load_settings

    return load_settings().data_dir / "pipelines" / pipeline / name


def dataset_key(dataset: Path, split: str) -> str:
    return hashlib.sha256(f"{Path(dataset).resolve()}\x00{split}".encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=2)
def embedder(precision: str) -> Any:
    """The knowledge service's model variant (the platform embeds chunks and queries alike).

    One per process and precision: a Ray worker runs many cells, and loading the ONNX
    session costs 0.1-0.3 s, which 16 cells would otherwise pay 16 times."""
    from stratmaster.knowledge.onnx_embedding import OnnxEmbedder
    from stratmaster.settings import load_settings

    return OnnxEmbedder(load_settings().data_dir / "models", precision=precision)


def build_snapshot(dataset_path: str, split: str, chunk_tokens: int | None, precision: str,
                   cache_file: str) -> dict[str, Any]:
    """Index the corpus once with this chunk size; the stores as a tar, and how long it took."""
    from stratmaster.evals.datasets import load_beir
    from stratmaster.evals.retrieval_eval import build_index, snapshot_index
    from stratmaster.knowledge.embedding import CachedEmbedder, SqliteEmbeddingCache

    embed = CachedEmbedder(embedder(precision), SqliteEmbeddingCache(Path(cache_file))).embed
    with tempfile.TemporaryDirectory(prefix="pipeline-index-") as directory:
        stats = build_index(load_beir(dataset_path, split), Path(directory), embed, chunk_tokens)
        return {"snapshot": snapshot_index(Path(directory)), "documents": stats.documents, "chunks": stats.chunks,
                "seconds": stats.seconds}


def snapshot(path: Path, dataset_path: str, split: str, chunk_tokens: int | None, precision: str,
             cache_file: str, remote: bool) -> tuple[bytes, dict[str, Any] | None]:
    """The snapshot at `path`, built first (as a Ray task when `remote`) if it is not there."""
    if path.exists():
        return path.read_bytes(), None
    if remote:
        import ray

        built = ray.get(ray.remote(num_cpus=1)(build_snapshot).remote(dataset_path, split, chunk_tokens, precision,
                                                                          cache_file))
    else:
        built = build_snapshot(dataset_path, split, chunk_tokens, precision, cache_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(built["snapshot"])
    return built["snapshot"], {k: v for k, v in built.items() if k != "snapshot"}


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def report_progress(folder: Path, phase: str, done: int, total: int) -> None:
    """`progress.json` in the output folder: what the evals service shows while a run's job runs."""
    from stratmaster.evals.retrieval_eval import write_json

    write_json(folder / "progress.json", {"phase": phase, "done": done, "total": total})
