"""Object storage (uploaded documents, exports): a local folder by default, S3 when MINIO_ENDPOINT is set.

Both implementations accept exactly the same tenants, keys and metadata (the checks below
run before either touches storage), so a key that works on a laptop works against MinIO or
SeaweedFS. Keys are `/`-separated relative paths; the tenant is a separate argument and
becomes the first path segment (folder) or the key prefix `<tenant>/` (bucket), so one
tenant's `list` can never reach another's objects.

Metadata keys are lowercase ASCII (`[a-z0-9][a-z0-9-]*`) because S3 sends them as HTTP
header names, which are case-insensitive; values are any non-empty text (the S3 adapter
percent-encodes them, since header values must be ASCII; S3 drops empty ones). The `stratmaster-` prefix is
reserved for what the stores record themselves (the SHA-256 of the content, the codec, the original size).

Compression (`ObjectCodec`): each object is stored with a codec recorded beside it ("identity" or
"zstd"; the folder store's sidecar, the S3 user metadata `x-amz-meta-stratmaster-codec`), and
`get` decodes transparently. The rule, unless `put(compress=...)` overrides it: zstd when the
data has at least `min_bytes` (1 KiB) and the frame saves at least `min_saving` (10%) of it,
else identity. Objects written before codecs existed have no codec recorded and read as identity.
`size` and `sha256` always describe the original bytes; `stored_size` what the storage holds.

Encryption at rest (`keyring`, from STRATMASTER_ENCRYPTION_KEYS): after compression the
payload is sealed with AES-256-GCM under the keyring's active key, bound to `<tenant>/<key>`
(stratmaster/security/encryption.py); the key id is recorded beside the object (sidecar
`key_id`, S3 `x-amz-meta-stratmaster-key-id`) and in the payload's own header, so objects
written under an older key keep reading while it stays in the keyring. A store without a
keyring writes plaintext and refuses, with a StoreError naming the key, to read sealed objects.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import urllib3
import zstandard
from minio import Minio
from minio.error import MinioException, S3Error

from stratmaster.health import ComponentHealth, probed
from stratmaster.security.encryption import EncryptionError, Keyring, key_id_of
from stratmaster.settings import Settings
from stratmaster.stores.protocols import ObjectInfo, ObjectNotFound, ObjectStore, StoreError

DEFAULT_CONTENT_TYPE = "application/octet-stream"
RESERVED_METADATA_PREFIX = "stratmaster-"
SHA256_METADATA_KEY = RESERVED_METADATA_PREFIX + "sha256"
CODEC_METADATA_KEY = RESERVED_METADATA_PREFIX + "codec"
SIZE_METADATA_KEY = RESERVED_METADATA_PREFIX + "size"  # the original size of an encoded object
KEY_ID_METADATA_KEY = RESERVED_METADATA_PREFIX + "key-id"  # the encryption key of a sealed object
IDENTITY = "identity"
ZSTD = "zstd"
CODECS = (IDENTITY, ZSTD)
STALE_TEMP_SECONDS = 3600  # a folder store's temporary file this old is a crashed write's
MAX_KEY_BYTES = 900  # S3 allows 1024 for the whole name, which also carries "<tenant>/"
MAX_SEGMENT_BYTES = 255  # a file name on ext4/xfs/apfs
# S3 caps user metadata at 2 KiB (keys + values); ~130 bytes go to the stratmaster- keys.
MAX_METADATA_BYTES = 1900

# A superset of identity's tenant ids ([a-z0-9_-]{1,64}); never ".", ".." or a dot-folder.
_TENANT_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_METADATA_KEY_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"})


# --- argument checks shared by every implementation -----------------------------------------
def validate_tenant(tenant: str) -> str:
    """A tenant is one path segment: 1-64 letters, digits, `.`, `_`, `-`, not starting with a dot."""
    if not isinstance(tenant, str) or not _TENANT_RE.fullmatch(tenant):
        raise ValueError(f"invalid tenant {tenant!r}: 1-64 of [A-Za-z0-9._-], not starting with '.'")
    return tenant


def validate_key(key: str) -> str:
    """A relative `/`-separated path without empty, `.` or `..` segments, backslashes or control characters."""
    if not isinstance(key, str) or not key:
        raise ValueError("object key must be a non-empty string")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"object key is longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise ValueError(f"object key must be relative, got {key!r}")
    if "\\" in key or _CONTROL_RE.search(key):
        raise ValueError(f"object key contains a backslash or control character: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"object key has an empty, '.' or '..' segment: {key!r}")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise ValueError(f"object key segment is longer than {MAX_SEGMENT_BYTES} bytes: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A key prefix: "" or the start of a valid key (its last segment may be partial or empty)."""
    if not isinstance(prefix, str):
        raise ValueError("prefix must be a string")
    if prefix:
        folder, _, last = prefix.rpartition("/")
        if folder:
            validate_key(folder)
        elif prefix.startswith("/"):
            raise ValueError(f"prefix must be relative, got {prefix!r}")
        if last in (".", "..") or "\\" in last or _CONTROL_RE.search(last):
            raise ValueError(f"invalid prefix {prefix!r}")
    return prefix


def validate_content_type(content_type: str) -> str:
    if (not isinstance(content_type, str) or not content_type.isascii() or "/" not in content_type
            or _CONTROL_RE.search(content_type)):
        raise ValueError(f"content type must be an ASCII type/subtype, got {content_type!r}")
    return content_type


def validate_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    metadata = dict(metadata or {})
    size = 0
    for name, value in metadata.items():
        if not isinstance(name, str) or not _METADATA_KEY_RE.fullmatch(name):
            raise ValueError(f"metadata key {name!r} must match [a-z0-9][a-z0-9-]* (at most 64 characters)")
        if name.startswith(RESERVED_METADATA_PREFIX):
            raise ValueError(f"metadata keys starting with {RESERVED_METADATA_PREFIX!r} are reserved: {name!r}")
        if not isinstance(value, str):
            raise ValueError(f"metadata value of {name!r} must be a string, got {type(value).__name__}")
        if not value:
            raise ValueError(f"metadata value of {name!r} is empty; S3 drops empty values, so omit the key")
        size += len(name) + len(_encode_metadata_value(value))
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is {size} bytes once encoded; at most {MAX_METADATA_BYTES} fit in S3 headers")
    return metadata


def _check_data(data: bytes) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"object data must be bytes, got {type(data).__name__}")
    return bytes(data)


def _encode_metadata_value(value: str) -> str:
    # Header values must be printable ASCII and lose surrounding spaces: percent-encoding
    # (spaces included) keeps any text and is reversible.
    return quote(value, safe="!#$&'()*+,./:;=?@[]^_`{|}~-")



# --- codecs -------------------------------------------------------------------------------------
# A zstd skippable frame (magic 0x184D2A50, then the payload's length) naming us, in front of
# every zstd payload: `zstd -d` still reads the file, and a folder store whose sidecar was lost
# in a crash can tell its own compressed data from an uploaded .zst file stored as is.
_MARKER_PAYLOAD = b"stratmaster-codec:zstd"
ZSTD_MARKER = b"\x50\x2a\x4d\x18" + len(_MARKER_PAYLOAD).to_bytes(4, "little") + _MARKER_PAYLOAD


@dataclass(frozen=True, slots=True)
class ObjectCodec:
    """How a store encodes what it writes (every store decodes every codec, whatever its rule).

    `put(compress=None)` applies the rule: zstd at `level` when the data has at least
    `min_bytes` and the stored payload is at least `min_saving` smaller, else identity.
    `compress=True` stores zstd regardless, `compress=False` identity.
    """

    level: int = 3
    min_bytes: int = 1024
    min_saving: float = 0.1
    enabled: bool = True  # False: the rule stores identity (compress=True still forces zstd)

    def __post_init__(self) -> None:
        if not 1 <= self.level <= 22:
            raise ValueError(f"zstd level must be 1-22, got {self.level}")
        if self.min_bytes < 0 or not 0.0 <= self.min_saving < 1.0:
            raise ValueError("min_bytes must be >= 0 and min_saving in [0, 1)")

    def encode(self, data: bytes, compress: bool | None = None) -> tuple[bytes, str]:
        """(stored payload, codec) for these original bytes."""
        if compress is False or (compress is None and (not self.enabled or len(data) < self.min_bytes)):
            return data, IDENTITY
        payload = ZSTD_MARKER + zstandard.ZstdCompressor(level=self.level, write_content_size=True).compress(data)
        if compress is None and len(payload) > len(data) * (1.0 - self.min_saving):
            return data, IDENTITY
        return payload, ZSTD

    @staticmethod
    def decode(payload: bytes, codec: str, size: int | None = None) -> bytes:
        """The original bytes; ValueError when the payload is not what `codec` says (or not `size` long)."""
        if codec == IDENTITY:
            data = payload
        elif codec == ZSTD:
            if not payload.startswith(ZSTD_MARKER):
                raise ValueError("zstd payload lacks the stratmaster frame marker")
            frame = payload[len(ZSTD_MARKER):]
            try:
                # Checked before decompressing: a frame claiming more than the record is not ours to inflate.
                if size is not None and zstandard.frame_content_size(frame) != size:
                    raise ValueError(f"the zstd frame holds {zstandard.frame_content_size(frame)} bytes, "
                                     f"the object records {size}")
                data = zstandard.ZstdDecompressor().decompress(frame)
            except zstandard.ZstdError as exc:
                raise ValueError(f"corrupt zstd payload: {exc}") from exc
        else:
            raise ValueError(f"unknown codec {codec!r} (known: {', '.join(CODECS)})")
        if size is not None and len(data) != size:
            raise ValueError(f"decoded {len(data)} bytes, the object records {size}")
        return data

    @staticmethod
    def sniff(payload: bytes) -> str:
        """The codec of a payload whose record is lost: zstd only if it carries our marker."""
        return ZSTD if payload.startswith(ZSTD_MARKER) else IDENTITY


DEFAULT_CODEC = ObjectCodec()


def seal(keyring: Keyring | None, payload: bytes, tenant: str, key: str) -> tuple[bytes, str | None]:
    """(what to store, its key id): encrypted under the active key when there is a keyring."""
    if keyring is None:
        return payload, None
    return keyring.encrypt(payload, f"{tenant}/{key}".encode()), keyring.active


def unseal(keyring: Keyring | None, payload: bytes, key_id: str | None, tenant: str, key: str) -> bytes:
    """The codec payload of a stored object; ValueError when it is sealed and cannot be opened."""
    if key_id is None:
        return payload
    if keyring is None:
        raise EncryptionError(f"the object is encrypted with key {key_id!r}, but STRATMASTER_ENCRYPTION_KEYS "
                              "is not set")
    return keyring.decrypt(payload, f"{tenant}/{key}".encode())


# --- embedded: a local folder ----------------------------------------------------------------
class LocalFolderObjectStore:
    """Objects as plain files: `<root>/<tenant>/<key>`, metadata in `<root>/.meta/<tenant>/<key>`.

    The metadata tree mirrors the data tree path for path, so a key's sidecar can never
    collide with another key. Writes go to a temporary file in `<root>/.tmp` (same file
    system) and are moved into place with `os.replace`, so a reader sees the old or the new
    content, never a partial file; data is replaced before its sidecar, and a missing
    sidecar (a crash in between) is rebuilt from the data on read.

    One documented difference from S3: a file cannot also be a folder, so while `a` exists
    `a/b` cannot be stored (and the other way round); `put` raises ValueError. Emptied
    folders are removed on delete, so the name frees up again.

    Compressed objects are zstd files at the same path (a skippable frame marks them as ours);
    the sidecar records `codec` and `stored_size` besides the original `size` and `sha256`. A
    sidecar without `codec` (written before codecs existed) describes an identity object.

    Like every embedded store it belongs to one process; a lock serialises this process's
    writers, and readers take it too, so data and sidecar always come from the same put.
    Other processes may write other keys meanwhile (the compress_corpus pipeline's tasks do):
    their temporary files carry their pid, and `close` leaves them alone.
    """

    backend = "local-folder"
    embedded = True

    def __init__(self, root: Path, codec: ObjectCodec = DEFAULT_CODEC, keyring: Keyring | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        self.codec = codec
        self.keyring = keyring
        self._meta_root = self.root / ".meta"
        self._tmp_root = self.root / ".tmp"
        self._lock = threading.Lock()
        for folder in (self.root, self._meta_root, self._tmp_root):
            folder.mkdir(parents=True, exist_ok=True)

    # paths
    def _data_path(self, tenant: str, key: str) -> Path:
        return self.root / validate_tenant(tenant) / validate_key(key)

    def _meta_path(self, tenant: str, key: str) -> Path:
        return self._meta_root / tenant / key

    def _write_atomically(self, target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp_root, prefix=f"put-{os.getpid()}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise

    def _check_no_conflict(self, tenant: str, key: str) -> None:
        path = self.root / tenant
        segments = key.split("/")
        for segment in segments[:-1]:
            path = path / segment
            if path.is_file():
                raise ValueError(f"cannot store {key!r}: object {str(path.relative_to(self.root / tenant))!r} "
                                 "exists and a local folder store cannot make it a folder too")
        if (path / segments[-1]).is_dir():
            raise ValueError(f"cannot store {key!r}: keys under {key + '/'!r} exist and a local folder store "
                             "cannot make that folder a file too")

    # ObjectStore
    def put(self, tenant: str, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE,
            metadata: dict[str, str] | None = None, compress: bool | None = None) -> ObjectInfo:
        path = self._data_path(tenant, key)
        data = _check_data(data)
        content_type = validate_content_type(content_type)
        metadata = validate_metadata(metadata)
        payload, codec = self.codec.encode(data, compress)
        payload, key_id = seal(self.keyring, payload, tenant, key)
        info = ObjectInfo(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                          content_type=content_type, modified_at=datetime.now(UTC), metadata=metadata,
                          codec=codec, stored_size=len(payload), key_id=key_id)
        sidecar = json.dumps({"size": info.size, "sha256": info.sha256, "content_type": content_type,
                              "modified_at": info.modified_at.isoformat(), "metadata": metadata,
                              "codec": codec, "stored_size": info.stored_size, "key_id": key_id}).encode()
        try:
            with self._lock:
                self._check_no_conflict(tenant, key)
                self._write_atomically(path, payload)
                self._write_atomically(self._meta_path(tenant, key), sidecar)
        except OSError as exc:
            raise StoreError(f"local object store {self.root}: writing {tenant}/{key} failed: {exc}") from exc
        return info

    def get(self, tenant: str, key: str) -> bytes:
        path = self._data_path(tenant, key)
        try:
            with self._lock:  # data and sidecar from the same put
                payload = path.read_bytes()
                sidecar = self._sidecar(tenant, key, len(payload))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(f"{tenant}/{key}") from None
        except OSError as exc:
            raise StoreError(f"local object store {self.root}: reading {tenant}/{key} failed: {exc}") from exc
        try:
            if sidecar is None:
                return _decode_unrecorded(payload, self.keyring, tenant, key)[0]
            payload = unseal(self.keyring, payload, sidecar.get("key_id"), tenant, key)
            return ObjectCodec.decode(payload, sidecar.get("codec", IDENTITY), sidecar["size"])
        except ValueError as exc:
            raise StoreError(f"local object store {self.root}: decoding {tenant}/{key} failed: {exc}") from exc

    def _sidecar(self, tenant: str, key: str, stored_size: int) -> dict | None:
        """The sidecar of the data now on disk, or None (missing, unreadable or of another put)."""
        try:
            sidecar = json.loads(self._meta_path(tenant, key).read_bytes())
            recorded = sidecar.get("stored_size", sidecar["size"])  # no stored_size: written before codecs
            if not isinstance(sidecar["size"], int) or recorded != stored_size:
                return None  # stale
            return sidecar
        except (FileNotFoundError, NotADirectoryError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def stat(self, tenant: str, key: str) -> ObjectInfo | None:
        path = self._data_path(tenant, key)
        try:
            with self._lock:  # data and sidecar from the same put
                return self._info(tenant, key, path)
        except OSError as exc:
            raise StoreError(f"local object store {self.root}: stat of {tenant}/{key} failed: {exc}") from exc

    def _info(self, tenant: str, key: str, path: Path) -> ObjectInfo | None:
        if not path.is_file():
            return None
        stored_size = path.stat().st_size
        sidecar = self._sidecar(tenant, key, stored_size)
        try:
            if sidecar is not None:
                codec = sidecar.get("codec", IDENTITY)
                if codec not in CODECS:
                    raise ValueError(f"unknown codec {codec!r}")
                return ObjectInfo(key=key, size=sidecar["size"], sha256=sidecar["sha256"],
                                  content_type=sidecar["content_type"],
                                  modified_at=datetime.fromisoformat(sidecar["modified_at"]),
                                  metadata=dict(sidecar["metadata"]), codec=codec, stored_size=stored_size,
                                  key_id=sidecar.get("key_id"))
        except (ValueError, KeyError, TypeError):
            pass
        # No usable sidecar (a crash between the two renames): describe the data itself.
        payload = path.read_bytes()
        data, codec = _decode_unrecorded(payload, self.keyring, tenant, key)
        return ObjectInfo(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                          content_type=DEFAULT_CONTENT_TYPE,
                          modified_at=datetime.fromtimestamp(path.stat().st_mtime, UTC),
                          codec=codec, stored_size=len(payload), key_id=key_id_of(payload))

    def delete(self, tenant: str, key: str) -> bool:
        path = self._data_path(tenant, key)
        try:
            with self._lock:
                if not path.is_file():
                    return False
                path.unlink()
                with contextlib.suppress(OSError):
                    self._meta_path(tenant, key).unlink()
                self._prune_empty_folders(path.parent, self.root / tenant)
                self._prune_empty_folders(self._meta_path(tenant, key).parent, self._meta_root / tenant)
            return True
        except OSError as exc:
            raise StoreError(f"local object store {self.root}: deleting {tenant}/{key} failed: {exc}") from exc

    @staticmethod
    def _prune_empty_folders(folder: Path, stop: Path) -> None:
        while folder != stop and stop in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone): stop climbing
                return
            folder = folder.parent

    def list(self, tenant: str, prefix: str = "") -> list[ObjectInfo]:
        tenant_root = self.root / validate_tenant(tenant)
        prefix = validate_prefix(prefix)
        start = tenant_root / prefix.rpartition("/")[0] if "/" in prefix else tenant_root
        try:
            infos = []
            with self._lock:
                paths = list(_walk_files(start))
            for path in paths:
                key = path.relative_to(tenant_root).as_posix()
                if key.startswith(prefix):
                    with self._lock:
                        info = self._info(tenant, key, path)
                    if info is not None:
                        infos.append(info)
        except OSError as exc:
            raise StoreError(f"local object store {self.root}: listing {tenant}/{prefix} failed: {exc}") from exc
        return sorted(infos, key=lambda info: info.key)

    def ping(self) -> ComponentHealth:
        started = time.perf_counter()
        if not (self.root.is_dir() and os.access(self.root, os.W_OK | os.X_OK)):
            return probed("objects", self.backend, self.embedded, started, f"{self.root} is not a writable folder")
        return probed("objects", self.backend, self.embedded, started)

    def close(self) -> None:
        """Nothing is held open; leftover temporary files of crashed writes are removed: this
        process's, and any older than an hour. Another process's write in flight is left alone
        (batch pipelines' tasks open the same folder in several processes)."""
        now, mine = time.time(), f"put-{os.getpid()}-"
        with self._lock:
            with contextlib.suppress(OSError):
                for leftover in list(self._tmp_root.iterdir()):
                    with contextlib.suppress(OSError):
                        if leftover.name.startswith(mine) or now - leftover.lstat().st_mtime > STALE_TEMP_SECONDS:
                            if leftover.is_dir() and not leftover.is_symlink():
                                shutil.rmtree(leftover, ignore_errors=True)
                            else:
                                leftover.unlink()
            self._tmp_root.mkdir(parents=True, exist_ok=True)


def _decode_unrecorded(payload: bytes, keyring: Keyring | None = None, tenant: str = "",
                       key: str = "") -> tuple[bytes, str]:
    """Data whose sidecar is missing or stale: opened if sealed (and the keyring can), zstd if it
    carries our marker and decodes, else as is."""
    sealed = key_id_of(payload)
    if sealed is not None and keyring is not None:
        with contextlib.suppress(EncryptionError):
            payload = keyring.decrypt(payload, f"{tenant}/{key}".encode())
    codec = ObjectCodec.sniff(payload)
    try:
        return ObjectCodec.decode(payload, codec), codec
    except ValueError:
        return payload, IDENTITY


def _walk_files(start: Path) -> Iterator[Path]:
    if not start.is_dir():
        return
    for folder, _dirs, files in os.walk(start):
        for name in files:
            yield Path(folder) / name


# --- server: S3 (MinIO, SeaweedFS, AWS) --------------------------------------------------------
class S3ObjectStore:
    """One bucket; each tenant's objects live under the key prefix `<tenant>/`.

    The SHA-256 and the user metadata travel as S3 user metadata (`x-amz-meta-*`), so
    `stat` is one HEAD request. S3 listings carry no user metadata, so `list` issues a
    HEAD per object (a few in parallel): fine for a tenant's documents, not for millions.
    `delete` is a HEAD then a DELETE, because S3 deletes report success either way.
    Encoded objects carry `x-amz-meta-stratmaster-codec` and `-size` (the original size); an
    object without them (written before codecs existed, or by another tool) is identity.

    Timeouts are short (connect 3 s, read 30 s) with two retries on connection errors and
    5xx answers, so an unreachable server fails a request in seconds, not minutes. Every
    server or transport failure raises StoreError naming the endpoint and bucket; a
    missing object is ObjectNotFound (get) or None/False (stat/delete).
    """

    backend = "minio"
    embedded = False

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str = "stratmaster",
                 secure: bool | None = None, region: str = "us-east-1",
                 connect_timeout_s: float = 3.0, read_timeout_s: float = 30.0,
                 codec: ObjectCodec = DEFAULT_CODEC, keyring: Keyring | None = None) -> None:
        host, scheme_secure = _split_endpoint(endpoint)
        self.endpoint = host
        self.codec = codec
        self.keyring = keyring
        self.bucket = bucket
        self.secure = scheme_secure if secure is None else secure
        self.location = f"{'https' if self.secure else 'http'}://{host}/{bucket}"
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            retries=urllib3.Retry(total=2, connect=2, read=1, backoff_factor=0.2,
                                  status_forcelist=(500, 502, 503, 504), allowed_methods=None,
                                  raise_on_status=False),
            maxsize=10,
        )
        # An explicit region: the client otherwise asks the server for the bucket's location first.
        self._client = Minio(host, access_key=access_key, secret_key=secret_key, secure=self.secure,
                             region=region, http_client=self._http)
        self._region = region
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    def _error(self, operation: str, exc: Exception) -> StoreError:
        if isinstance(exc, S3Error):
            reason = f"{exc.code}: {exc.message}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        return StoreError(f"S3 object store {self.location}: {operation} failed: {reason}")

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if self._bucket_ready:
                return
            try:
                if not self._client.bucket_exists(self.bucket):
                    try:
                        self._client.make_bucket(self.bucket, location=self._region)
                    except S3Error as exc:
                        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                            raise
            except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                raise self._error(f"creating bucket {self.bucket!r}", exc) from exc
            self._bucket_ready = True

    @staticmethod
    def _name(tenant: str, key: str) -> str:
        return f"{validate_tenant(tenant)}/{validate_key(key)}"

    def put(self, tenant: str, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE,
            metadata: dict[str, str] | None = None, compress: bool | None = None) -> ObjectInfo:
        name = self._name(tenant, key)
        data = _check_data(data)
        content_type = validate_content_type(content_type)
        metadata = validate_metadata(metadata)
        sha256 = hashlib.sha256(data).hexdigest()
        payload, codec = self.codec.encode(data, compress)
        payload, key_id = seal(self.keyring, payload, tenant, key)
        # Explicit x-amz-meta- names: the client would send e.g. "content-language" as a plain header.
        headers = {"x-amz-meta-" + name_: _encode_metadata_value(value) for name_, value in metadata.items()}
        headers["x-amz-meta-" + SHA256_METADATA_KEY] = sha256
        headers["x-amz-meta-" + CODEC_METADATA_KEY] = codec
        headers["x-amz-meta-" + SIZE_METADATA_KEY] = str(len(data))
        if key_id is not None:
            headers["x-amz-meta-" + KEY_ID_METADATA_KEY] = key_id
        self._ensure_bucket()
        try:
            self._client.put_object(self.bucket, name, io.BytesIO(payload), len(payload),
                                    content_type=content_type, metadata=headers)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._error(f"PUT {name}", exc) from exc
        info = self._stat_name(key, name)
        if info is None:
            raise StoreError(f"S3 object store {self.location}: {name} vanished right after PUT")
        return info

    def get(self, tenant: str, key: str) -> bytes:
        name = self._name(tenant, key)
        self._ensure_bucket()
        response = None
        try:
            response = self._client.get_object(self.bucket, name)
            payload = response.read()
            codec = response.headers.get("x-amz-meta-" + CODEC_METADATA_KEY, IDENTITY)
            size = response.headers.get("x-amz-meta-" + SIZE_METADATA_KEY)
            key_id = response.headers.get("x-amz-meta-" + KEY_ID_METADATA_KEY)
        except S3Error as exc:
            if exc.code in _NOT_FOUND_CODES:
                raise ObjectNotFound(f"{tenant}/{key}") from None
            raise self._error(f"GET {name}", exc) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._error(f"GET {name}", exc) from exc
        finally:
            if response is not None:
                response.close()
                response.release_conn()
        try:
            payload = unseal(self.keyring, payload, key_id, tenant, key)
            return ObjectCodec.decode(payload, codec, int(size) if size and size.isdigit() else None)
        except ValueError as exc:
            raise StoreError(f"S3 object store {self.location}: decoding {name} failed: {exc}") from exc

    def stat(self, tenant: str, key: str) -> ObjectInfo | None:
        name = self._name(tenant, key)
        self._ensure_bucket()
        return self._stat_name(key, name)

    def _stat_name(self, key: str, name: str) -> ObjectInfo | None:
        try:
            obj = self._client.stat_object(self.bucket, name)
        except S3Error as exc:
            if exc.code in _NOT_FOUND_CODES:
                return None
            raise self._error(f"HEAD {name}", exc) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._error(f"HEAD {name}", exc) from exc
        user: dict[str, str] = {}
        for header, value in (obj.metadata or {}).items():
            lowered = header.lower()
            if lowered.startswith("x-amz-meta-"):
                user[lowered.removeprefix("x-amz-meta-")] = value
        sha256 = user.pop(SHA256_METADATA_KEY, "")
        codec = user.pop(CODEC_METADATA_KEY, IDENTITY)  # none recorded: written before codecs
        recorded_size = user.pop(SIZE_METADATA_KEY, "")
        key_id = user.pop(KEY_ID_METADATA_KEY, None)
        stored_size = obj.size or 0
        encoded = codec != IDENTITY or key_id is not None
        size = int(recorded_size) if encoded and recorded_size.isdigit() else stored_size
        metadata = {k: unquote(v) for k, v in user.items() if not k.startswith(RESERVED_METADATA_PREFIX)}
        modified_at = obj.last_modified or datetime.now(UTC)
        return ObjectInfo(key=key, size=size, sha256=sha256,
                          content_type=obj.content_type or DEFAULT_CONTENT_TYPE,
                          modified_at=modified_at, metadata=metadata, codec=codec, stored_size=stored_size,
                          key_id=key_id)

    def delete(self, tenant: str, key: str) -> bool:
        name = self._name(tenant, key)
        self._ensure_bucket()
        if self._stat_name(key, name) is None:
            return False
        try:
            self._client.remove_object(self.bucket, name)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._error(f"DELETE {name}", exc) from exc
        return True

    def list(self, tenant: str, prefix: str = "") -> list[ObjectInfo]:
        root = validate_tenant(tenant) + "/"
        prefix = validate_prefix(prefix)
        self._ensure_bucket()
        try:
            names = [obj.object_name for obj in self._client.list_objects(self.bucket, prefix=root + prefix,
                                                                          recursive=True)
                     if obj.object_name and not obj.is_dir]
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._error(f"LIST {root + prefix}", exc) from exc
        with ThreadPoolExecutor(max_workers=min(8, max(1, len(names)))) as pool:
            infos = pool.map(lambda name: self._stat_name(name.removeprefix(root), name), names)
            return sorted((info for info in infos if info is not None), key=lambda info: info.key)

    def ping(self) -> ComponentHealth:
        started = time.perf_counter()
        try:
            if not self._client.bucket_exists(self.bucket):
                self._ensure_bucket()
        except (StoreError, MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            return probed("objects", self.backend, self.embedded, started,
                          f"{self.location}: {type(exc).__name__}: {exc}")
        return probed("objects", self.backend, self.embedded, started)

    def close(self) -> None:
        self._http.clear()

    def remove_bucket(self) -> None:
        """Delete every object and the bucket itself (tests and teardown of throw-away buckets)."""
        try:
            if not self._client.bucket_exists(self.bucket):
                return
            for obj in self._client.list_objects(self.bucket, recursive=True):
                self._client.remove_object(self.bucket, obj.object_name)
            self._client.remove_bucket(self.bucket)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._error(f"removing bucket {self.bucket!r}", exc) from exc
        self._bucket_ready = False


def _split_endpoint(endpoint: str) -> tuple[str, bool]:
    """`host:port` (plain HTTP) or `http(s)://host:port` -> (host:port, secure)."""
    endpoint = endpoint.strip().rstrip("/")
    if "://" not in endpoint:
        return endpoint, False
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"S3 endpoint must be host:port or http(s)://host:port, got {endpoint!r}")
    return parts.netloc, parts.scheme == "https"


def create_object_store(settings: Settings, codec: ObjectCodec | None = None) -> ObjectStore:
    """S3 when MINIO_ENDPOINT is set, else a folder under the data dir; `codec` is the write rule
    (default: OBJECT_COMPRESSION and OBJECT_ZSTD_LEVEL)."""
    if codec is None:
        codec = ObjectCodec(level=settings.object_zstd_level, enabled=settings.object_compression)
    keyring = settings.keyring()
    if settings.minio_endpoint:
        secret = settings.minio_secret_key.get_secret_value() if settings.minio_secret_key else ""
        return S3ObjectStore(settings.minio_endpoint, settings.minio_access_key or "", secret, codec=codec,
                             keyring=keyring)
    return LocalFolderObjectStore(settings.data_dir / "objects", codec=codec, keyring=keyring)


__all__ = [
    "IDENTITY", "ZSTD", "LocalFolderObjectStore", "ObjectCodec", "S3ObjectStore", "create_object_store",
    "validate_key", "validate_metadata", "validate_prefix", "validate_tenant",
]
