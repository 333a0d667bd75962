"""One behaviour for every ObjectStore (haystack-style conformance tests).

`ObjectStoreConformance` holds the tests; each implementation's subclass overrides the
`store` fixture. The S3 subclass needs TEST_S3_ENDPOINT/ACCESS_KEY/SECRET_KEY
(`eval "$(bash scripts/servers.sh env)"` after `bash scripts/servers.sh start`); it uses a
bucket of its own per run and removes it afterwards.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import zstandard
from minio import Minio

from stratmaster.security.encryption import Keyring
from stratmaster.settings import Settings
from stratmaster.stores.objects import (
    ZSTD_MARKER,
    LocalFolderObjectStore,
    ObjectCodec,
    S3ObjectStore,
    create_object_store,
)
from stratmaster.stores.protocols import ObjectInfo, ObjectNotFound, ObjectStore, StoreError

ACME = "acme"
GLOBEX = "globex"

BAD_KEYS = [
    "", "/etc/passwd", "../escape", "a/../../escape", "a/..", "..", ".", "a/./b", "a//b", "a/",
    "a\\..\\b", "a\x00b", "line\nbreak", "x" * 300,
]
BAD_TENANTS = ["", "..", ".", "../other", "a/b", ".hidden", ".meta", "a" * 65, "sp ace", "Ü"]
# ~40 KiB of repetitive prose: compresses well, well above the 1 KiB threshold.
TEXT = b"".join(f"Paragraph {i}: the strategy review weighs market share, margins and risk.\n".encode()
                for i in range(500))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ObjectStoreConformance:
    """Tests every ObjectStore must pass; subclasses provide the `store` fixture."""

    @pytest.fixture
    def store(self) -> Iterator[ObjectStore]:
        raise NotImplementedError

    def test_is_an_object_store(self, store: ObjectStore) -> None:
        assert isinstance(store, ObjectStore)
        assert isinstance(store.backend, str) and isinstance(store.embedded, bool)

    def test_ping(self, store: ObjectStore) -> None:
        health = store.ping()
        assert health.healthy and health.name == "objects" and health.backend == store.backend

    # --- round trips ----------------------------------------------------------------------
    def test_round_trip(self, store: ObjectStore) -> None:
        info = store.put(ACME, "docs/report.txt", b"quarterly report", content_type="text/plain")
        assert info.key == "docs/report.txt"
        assert info.size == len(b"quarterly report")
        assert info.sha256 == sha256(b"quarterly report")
        assert info.content_type == "text/plain"
        assert info.metadata == {}
        assert store.get(ACME, "docs/report.txt") == b"quarterly report"

    def test_default_content_type(self, store: ObjectStore) -> None:
        assert store.put(ACME, "blob", b"x").content_type == "application/octet-stream"
        assert store.stat(ACME, "blob").content_type == "application/octet-stream"

    @pytest.mark.parametrize("data", [b"", bytes(range(256)) * 4, b"\x00\xff\r\n\x00"],
                             ids=["empty", "all-bytes", "nul-crlf"])
    def test_binary_data(self, store: ObjectStore, data: bytes) -> None:
        info = store.put(ACME, "bin/data.bin", data)
        assert info.size == len(data) and info.sha256 == sha256(data)
        assert store.get(ACME, "bin/data.bin") == data

    def test_large_object(self, store: ObjectStore) -> None:
        data = os.urandom(3 * 1024 * 1024 + 17)
        store.put(ACME, "big/random.bin", data)
        assert store.get(ACME, "big/random.bin") == data
        assert store.stat(ACME, "big/random.bin").sha256 == sha256(data)

    def test_unicode_key(self, store: ObjectStore) -> None:
        key = "Berichte/Über uns – 2025 (final).txt"
        store.put(ACME, key, "grüße".encode())
        assert store.get(ACME, key) == "grüße".encode()
        assert [info.key for info in store.list(ACME, "Berichte/")] == [key]

    # --- metadata ---------------------------------------------------------------------------
    def test_metadata_and_sha256(self, store: ObjectStore) -> None:
        metadata = {"title": "Über Strategie: 100% \"quoted\" & more", "source-url": "https://example.com/a?b=c",
                    "padded": "  spaces kept\t", "percent": "%41%"}
        info = store.put(ACME, "docs/m.pdf", b"%PDF-1.7", content_type="application/pdf", metadata=metadata)
        assert info.metadata == metadata
        stat = store.stat(ACME, "docs/m.pdf")
        assert stat == info  # put answers what stat would
        assert stat.sha256 == sha256(b"%PDF-1.7") and stat.size == 8
        assert stat.content_type == "application/pdf"
        assert stat.metadata == metadata

    def test_modified_at_is_recent_and_aware(self, store: ObjectStore) -> None:
        info = store.put(ACME, "t.txt", b"t")
        assert info.modified_at.tzinfo is not None
        assert abs(datetime.now(UTC) - info.modified_at) < timedelta(minutes=5)

    @pytest.mark.parametrize("metadata", [{"Title": "x"}, {"stratmaster-sha256": "0" * 64}, {"a b": "x"},
                                          {"title": 3}, {"k": "v" * 3000},
                                          {"empty": ""}])
    def test_invalid_metadata_is_rejected(self, store: ObjectStore, metadata: dict) -> None:
        with pytest.raises(ValueError):
            store.put(ACME, "m.txt", b"x", metadata=metadata)
        assert store.stat(ACME, "m.txt") is None

    @pytest.mark.parametrize("content_type", ["", "text", "text/plain\r\nx-evil: 1", "täxt/plain"])
    def test_invalid_content_type_is_rejected(self, store: ObjectStore, content_type: str) -> None:
        with pytest.raises(ValueError):
            store.put(ACME, "c.txt", b"x", content_type=content_type)

    def test_data_must_be_bytes(self, store: ObjectStore) -> None:
        with pytest.raises(TypeError):
            store.put(ACME, "s.txt", "text")  # type: ignore[arg-type]

    # --- overwrite and delete -------------------------------------------------------------
    def test_overwrite_replaces_data_metadata_and_type(self, store: ObjectStore) -> None:
        store.put(ACME, "o.txt", b"first", content_type="text/plain", metadata={"version": "1", "old": "x"})
        info = store.put(ACME, "o.txt", b"second!", content_type="text/markdown", metadata={"version": "2"})
        assert store.get(ACME, "o.txt") == b"second!"
        stat = store.stat(ACME, "o.txt")
        assert stat == info
        assert (stat.size, stat.sha256, stat.content_type, stat.metadata) == (
            7, sha256(b"second!"), "text/markdown", {"version": "2"})
        assert [i.key for i in store.list(ACME)] == ["o.txt"]

    def test_delete(self, store: ObjectStore) -> None:
        store.put(ACME, "d/x.txt", b"x")
        store.put(ACME, "d/y.txt", b"y")
        assert store.delete(ACME, "d/x.txt") is True
        assert store.delete(ACME, "d/x.txt") is False
        assert store.stat(ACME, "d/x.txt") is None
        with pytest.raises(ObjectNotFound):
            store.get(ACME, "d/x.txt")
        assert [i.key for i in store.list(ACME)] == ["d/y.txt"]
        assert store.get(ACME, "d/y.txt") == b"y"

    def test_put_after_delete(self, store: ObjectStore) -> None:
        store.put(ACME, "r/again.txt", b"1")
        store.delete(ACME, "r/again.txt")
        store.put(ACME, "r/again.txt", b"2")
        assert store.get(ACME, "r/again.txt") == b"2"

    # --- not found ----------------------------------------------------------------------------
    def test_not_found(self, store: ObjectStore) -> None:
        with pytest.raises(ObjectNotFound) as excinfo:
            store.get(ACME, "missing/key.txt")
        assert isinstance(excinfo.value, KeyError)
        assert store.stat(ACME, "missing/key.txt") is None
        assert store.delete(ACME, "missing/key.txt") is False
        assert store.list(ACME, "missing/") == []

    def test_folder_is_not_an_object(self, store: ObjectStore) -> None:
        store.put(ACME, "folder/inside.txt", b"x")
        with pytest.raises(ObjectNotFound):
            store.get(ACME, "folder")
        assert store.stat(ACME, "folder") is None
        assert store.delete(ACME, "folder") is False
        assert store.get(ACME, "folder/inside.txt") == b"x"

    # --- listing ------------------------------------------------------------------------------
    def test_list_by_prefix(self, store: ObjectStore) -> None:
        keys = ["docs/a.txt", "docs/b.txt", "docs/sub/c.txt", "docsx/d.txt", "other.txt"]
        for key in keys:
            store.put(ACME, key, key.encode(), content_type="text/plain", metadata={"k": key})
        assert [i.key for i in store.list(ACME)] == sorted(keys)
        assert [i.key for i in store.list(ACME, "docs/")] == ["docs/a.txt", "docs/b.txt", "docs/sub/c.txt"]
        assert [i.key for i in store.list(ACME, "docs")] == ["docs/a.txt", "docs/b.txt", "docs/sub/c.txt",
                                                               "docsx/d.txt"]
        assert [i.key for i in store.list(ACME, "docs/sub/")] == ["docs/sub/c.txt"]
        assert [i.key for i in store.list(ACME, "docs/s")] == ["docs/sub/c.txt"]
        assert [i.key for i in store.list(ACME, "o")] == ["other.txt"]
        assert store.list(ACME, "nothing/") == []

    def test_list_returns_full_info(self, store: ObjectStore) -> None:
        info = store.put(ACME, "l/one.json", b"{}", content_type="application/json", metadata={"kind": "brief"})
        [listed] = store.list(ACME, "l/")
        assert isinstance(listed, ObjectInfo)
        assert listed == info

    @pytest.mark.parametrize("prefix", ["../", "/", "a/../", "a//", "../../etc/"])
    def test_list_rejects_traversal_prefixes(self, store: ObjectStore, prefix: str) -> None:
        with pytest.raises(ValueError):
            store.list(ACME, prefix)

    # --- tenants -----------------------------------------------------------------------------
    def test_tenant_isolation(self, store: ObjectStore) -> None:
        store.put(ACME, "shared/name.txt", b"acme's", metadata={"owner": "acme"})
        store.put(ACME, "shared/only-acme.txt", b"secret")
        store.put(GLOBEX, "shared/name.txt", b"globex's", metadata={"owner": "globex"})

        assert store.get(ACME, "shared/name.txt") == b"acme's"
        assert store.get(GLOBEX, "shared/name.txt") == b"globex's"
        assert store.stat(GLOBEX, "shared/name.txt").metadata == {"owner": "globex"}
        with pytest.raises(ObjectNotFound):
            store.get(GLOBEX, "shared/only-acme.txt")
        assert store.stat(GLOBEX, "shared/only-acme.txt") is None
        assert store.delete(GLOBEX, "shared/only-acme.txt") is False
        assert [i.key for i in store.list(GLOBEX)] == ["shared/name.txt"]
        assert [i.key for i in store.list(GLOBEX, "shared/")] == ["shared/name.txt"]

        assert store.delete(GLOBEX, "shared/name.txt") is True
        assert store.get(ACME, "shared/name.txt") == b"acme's"
        assert [i.key for i in store.list(ACME)] == ["shared/name.txt", "shared/only-acme.txt"]

    @pytest.mark.parametrize("tenant", ["-dash", "_under", "t.e.n", "a" * 64])
    def test_identity_style_tenants_are_accepted(self, store: ObjectStore, tenant: str) -> None:
        store.put(tenant, "k.txt", b"v")
        assert [i.key for i in store.list(tenant)] == ["k.txt"]

    def test_tenant_prefix_of_another_tenant(self, store: ObjectStore) -> None:
        store.put("acme2", "x.txt", b"2")
        store.put("acme", "y.txt", b"1")
        assert [i.key for i in store.list("acme")] == ["y.txt"]
        assert [i.key for i in store.list("acme2")] == ["x.txt"]
        assert store.stat("acme", "x.txt") is None

    def test_tenant_cannot_be_reached_through_a_key(self, store: ObjectStore) -> None:
        store.put(GLOBEX, "secret.txt", b"globex only")
        for key in (f"../{GLOBEX}/secret.txt", f"x/../../{GLOBEX}/secret.txt"):
            with pytest.raises(ValueError):
                store.get(ACME, key)

    # --- invalid keys and tenants ----------------------------------------------------------
    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_bad_keys_are_rejected(self, store: ObjectStore, key: str) -> None:
        with pytest.raises(ValueError):
            store.put(ACME, key, b"x")
        with pytest.raises(ValueError):
            store.get(ACME, key)
        with pytest.raises(ValueError):
            store.stat(ACME, key)
        with pytest.raises(ValueError):
            store.delete(ACME, key)

    @pytest.mark.parametrize("tenant", BAD_TENANTS)
    def test_bad_tenants_are_rejected(self, store: ObjectStore, tenant: str) -> None:
        with pytest.raises(ValueError):
            store.put(tenant, "k.txt", b"x")
        with pytest.raises(ValueError):
            store.list(tenant)

    def test_keys_with_dots_inside_segments_are_fine(self, store: ObjectStore) -> None:
        for key in ("a..b/c", ".hidden/x", "v1.2/..config", "...", "a/.b"):
            store.put(ACME, key, key.encode())
            assert store.get(ACME, key) == key.encode()

    # --- codecs ------------------------------------------------------------------------------
    def write_legacy(self, store: ObjectStore, tenant: str, key: str, data: bytes, content_type: str,
                     metadata: dict[str, str]) -> None:
        """Store an object the way this implementation did before codecs existed."""
        raise NotImplementedError

    def test_large_text_is_stored_zstd(self, store: ObjectStore) -> None:
        info = store.put(ACME, "text/report.txt", TEXT, content_type="text/plain", metadata={"lang": "en"})
        assert (info.codec, info.size, info.sha256) == ("zstd", len(TEXT), sha256(TEXT))
        assert info.stored_size < len(TEXT) / 4
        assert store.get(ACME, "text/report.txt") == TEXT
        assert store.stat(ACME, "text/report.txt") == info
        [listed] = store.list(ACME, "text/")
        assert listed == info and (listed.size, listed.stored_size) == (info.size, info.stored_size)

    @pytest.mark.parametrize("data", [b"x" * 1023, b"short text", b""], ids=["below-1KiB", "short", "empty"])
    def test_small_objects_stay_identity(self, store: ObjectStore, data: bytes) -> None:
        info = store.put(ACME, "small.txt", data)
        assert (info.codec, info.size, info.stored_size) == ("identity", len(data), len(data))
        assert store.stat(ACME, "small.txt") == info
        assert store.get(ACME, "small.txt") == data

    def test_incompressible_data_stays_identity(self, store: ObjectStore) -> None:
        data = os.urandom(64 * 1024)
        info = store.put(ACME, "random.bin", data)
        assert (info.codec, info.stored_size) == ("identity", len(data))
        assert store.get(ACME, "random.bin") == data

    def test_compress_argument_overrides_the_rule(self, store: ObjectStore) -> None:
        forced = store.put(ACME, "forced.txt", b"tiny", compress=True)
        assert (forced.codec, forced.size) == ("zstd", 4)
        assert store.get(ACME, "forced.txt") == b"tiny"
        kept = store.put(ACME, "kept.txt", TEXT, compress=False)
        assert (kept.codec, kept.stored_size) == ("identity", len(TEXT))
        assert store.get(ACME, "kept.txt") == TEXT
        assert store.put(ACME, "empty", b"", compress=True).codec == "zstd"
        assert store.get(ACME, "empty") == b""

    def test_overwrite_changes_the_codec(self, store: ObjectStore) -> None:
        assert store.put(ACME, "swap.txt", TEXT).codec == "zstd"
        assert store.put(ACME, "swap.txt", b"now small").codec == "identity"
        assert store.get(ACME, "swap.txt") == b"now small"
        assert store.put(ACME, "swap.txt", TEXT + b"!").codec == "zstd"
        assert store.get(ACME, "swap.txt") == TEXT + b"!"
        assert store.stat(ACME, "swap.txt").size == len(TEXT) + 1

    def test_codec_keys_are_reserved(self, store: ObjectStore) -> None:
        for name in ("stratmaster-codec", "stratmaster-size"):
            with pytest.raises(ValueError):
                store.put(ACME, "r.txt", b"x", metadata={name: "identity"})

    @pytest.mark.parametrize("data", [TEXT, b"legacy", zstandard.ZstdCompressor().compress(TEXT)],
                             ids=["large-text", "small", "an-uploaded-zst-file"])
    def test_objects_written_before_codecs_read_back_unchanged(self, store: ObjectStore, data: bytes) -> None:
        self.write_legacy(store, ACME, "old/doc.txt", data, "text/plain", {"title": "Alt"})
        assert store.get(ACME, "old/doc.txt") == data
        info = store.stat(ACME, "old/doc.txt")
        assert (info.codec, info.size, info.stored_size, info.sha256) == ("identity", len(data), len(data),
                                                                          sha256(data))
        assert (info.content_type, info.metadata) == ("text/plain", {"title": "Alt"})
        assert store.list(ACME, "old/") == [info]
        # Rewriting a legacy object applies today's rule.
        store.put(ACME, "old/doc.txt", store.get(ACME, "old/doc.txt"), content_type=info.content_type,
                  metadata=info.metadata, compress=True)
        assert store.get(ACME, "old/doc.txt") == data
        assert store.stat(ACME, "old/doc.txt").codec == "zstd"


# --- embedded: local folder -----------------------------------------------------------------------
class TestLocalFolderObjectStore(ObjectStoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LocalFolderObjectStore]:
        store = LocalFolderObjectStore(tmp_path / "objects")
        yield store
        store.close()

    def write_legacy(self, store: LocalFolderObjectStore, tenant: str, key: str, data: bytes, content_type: str,
                     metadata: dict[str, str]) -> None:
        # The data file and the sidecar exactly as the store wrote them before codecs.
        (store.root / tenant / key).parent.mkdir(parents=True, exist_ok=True)
        (store.root / tenant / key).write_bytes(data)
        (store.root / ".meta" / tenant / key).parent.mkdir(parents=True, exist_ok=True)
        (store.root / ".meta" / tenant / key).write_text(json.dumps(
            {"size": len(data), "sha256": sha256(data), "content_type": content_type,
             "modified_at": datetime.now(UTC).isoformat(), "metadata": metadata}))

    def test_compressed_layout(self, store: LocalFolderObjectStore) -> None:
        info = store.put(ACME, "docs/big.txt", TEXT)
        on_disk = (store.root / ACME / "docs" / "big.txt").read_bytes()
        assert on_disk.startswith(ZSTD_MARKER) and len(on_disk) == info.stored_size
        # A plain zstd stream (the marker is a skippable frame): any zstd tool reads the file.
        assert zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(on_disk) == TEXT
        sidecar = json.loads((store.root / ".meta" / ACME / "docs" / "big.txt").read_bytes())
        assert (sidecar["codec"], sidecar["size"], sidecar["stored_size"]) == ("zstd", len(TEXT), len(on_disk))

    def test_missing_sidecar_of_a_compressed_object(self, store: LocalFolderObjectStore) -> None:
        store.put(ACME, "docs/big.txt", TEXT, content_type="text/plain")
        (store.root / ".meta" / ACME / "docs" / "big.txt").unlink()  # a crash between the renames
        assert store.get(ACME, "docs/big.txt") == TEXT
        info = store.stat(ACME, "docs/big.txt")
        assert (info.codec, info.size, info.sha256) == ("zstd", len(TEXT), sha256(TEXT))

    def test_corrupt_compressed_data_raises_store_error(self, store: LocalFolderObjectStore) -> None:
        info = store.put(ACME, "docs/big.txt", TEXT)
        path = store.root / ACME / "docs" / "big.txt"
        path.write_bytes(ZSTD_MARKER + b"\x00" * (info.stored_size - len(ZSTD_MARKER)))  # same size: sidecar kept
        with pytest.raises(StoreError, match="decoding acme/docs/big.txt"):
            store.get(ACME, "docs/big.txt")

    def test_codec_rule_is_configurable(self, tmp_path: Path) -> None:
        store = LocalFolderObjectStore(tmp_path / "objects", codec=ObjectCodec(level=19, min_bytes=10))
        assert store.put(ACME, "a.txt", b"abc" * 100).codec == "zstd"
        assert store.get(ACME, "a.txt") == b"abc" * 100
        with pytest.raises(ValueError):
            ObjectCodec(level=0)

    def test_layout_is_plain_files(self, store: LocalFolderObjectStore) -> None:
        store.put(ACME, "docs/a.txt", b"hello")
        assert (store.root / ACME / "docs" / "a.txt").read_bytes() == b"hello"
        assert (store.root / ".meta" / ACME / "docs" / "a.txt").is_file()
        assert list((store.root / ".tmp").iterdir()) == []  # no temp files left behind

    def test_missing_sidecar_is_rebuilt_from_data(self, store: LocalFolderObjectStore) -> None:
        store.put(ACME, "docs/a.txt", b"hello", content_type="text/plain", metadata={"k": "v"})
        (store.root / ".meta" / ACME / "docs" / "a.txt").unlink()  # as if we crashed between renames
        info = store.stat(ACME, "docs/a.txt")
        assert (info.size, info.sha256, info.content_type) == (5, sha256(b"hello"), "application/octet-stream")
        assert [i.key for i in store.list(ACME)] == ["docs/a.txt"]

    def test_stale_sidecar_is_ignored(self, store: LocalFolderObjectStore) -> None:
        store.put(ACME, "a.txt", b"short")
        (store.root / ACME / "a.txt").write_bytes(b"a longer body")
        assert store.stat(ACME, "a.txt").sha256 == sha256(b"a longer body")

    def test_file_and_folder_of_the_same_name_conflict(self, store: LocalFolderObjectStore) -> None:
        """Documented difference from S3: `a` and `a/b` cannot both exist in a folder store."""
        store.put(ACME, "a", b"file")
        with pytest.raises(ValueError, match="folder"):
            store.put(ACME, "a/b", b"x")
        store.put(ACME, "c/d", b"x")
        with pytest.raises(ValueError, match="folder"):
            store.put(ACME, "c", b"x")
        assert store.get(ACME, "a") == b"file"
        # Deleting the last object in a folder frees the name again.
        store.delete(ACME, "c/d")
        assert not (store.root / ACME / "c").exists()
        store.put(ACME, "c", b"now a file")
        assert store.get(ACME, "c") == b"now a file"

    def test_concurrent_writers_never_expose_partial_data(self, store: LocalFolderObjectStore) -> None:
        bodies = [bytes([i]) * 200_000 for i in range(8)]
        store.put(ACME, "hot.bin", bodies[0])
        errors: list[BaseException] = []

        def write(body: bytes) -> None:
            try:
                for _ in range(5):
                    store.put(ACME, "hot.bin", body)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(body,)) for body in bodies]
        for thread in threads:
            thread.start()
        seen = set()
        while any(thread.is_alive() for thread in threads):
            seen.add(store.get(ACME, "hot.bin"))
        for thread in threads:
            thread.join()
        assert not errors
        assert seen <= set(bodies)
        final = store.get(ACME, "hot.bin")
        assert final in bodies and store.stat(ACME, "hot.bin").sha256 == sha256(final)

    def test_storage_failure_raises_store_error(self, store: LocalFolderObjectStore) -> None:
        (store.root / ".tmp").rmdir()
        (store.root / ".tmp").write_bytes(b"not a folder")  # temp files cannot be created
        with pytest.raises(StoreError, match="writing acme/x.txt failed"):
            store.put(ACME, "x.txt", b"x")
        assert store.stat(ACME, "x.txt") is None
        (store.root / ".tmp").unlink()
        (store.root / ".tmp").mkdir()


# --- server: S3 (SeaweedFS in tests) ----------------------------------------------------------------
def _s3_credentials() -> tuple[str, str, str]:
    names = ("TEST_S3_ENDPOINT", "TEST_S3_ACCESS_KEY", "TEST_S3_SECRET_KEY")
    values = [os.environ.get(name, "") for name in names]
    if not all(values):
        missing = ", ".join(name for name, value in zip(names, values, strict=True) if not value)
        if os.environ.get("STRATMASTER_REQUIRE_SERVERS") == "1":
            pytest.fail(f"STRATMASTER_REQUIRE_SERVERS=1 but {missing} unset")
        pytest.skip(f"{missing} unset (eval \"$(bash scripts/servers.sh env)\")")
    return values[0], values[1], values[2]


@pytest.fixture(scope="module")
def s3_bucket() -> Iterator[str]:
    """A bucket name unique to this run; the bucket is removed with everything in it afterwards."""
    endpoint, access_key, secret_key = _s3_credentials()
    owner = S3ObjectStore(endpoint, access_key, secret_key, bucket=f"stratmaster-test-{uuid.uuid4().hex[:16]}")
    yield owner.bucket
    owner.remove_bucket()
    owner.close()


@pytest.mark.s3
class TestS3ObjectStore(ObjectStoreConformance):
    @pytest.fixture
    def store(self, s3_bucket: str) -> Iterator[S3ObjectStore]:
        endpoint, access_key, secret_key = _s3_credentials()
        store = S3ObjectStore(endpoint, access_key, secret_key, bucket=s3_bucket)
        yield store
        store.close()
        client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=False, region="us-east-1")
        if client.bucket_exists(s3_bucket):  # each test starts empty
            for obj in client.list_objects(s3_bucket, recursive=True):
                client.remove_object(s3_bucket, obj.object_name)

    def write_legacy(self, store: S3ObjectStore, tenant: str, key: str, data: bytes, content_type: str,
                     metadata: dict[str, str]) -> None:
        # As the adapter wrote objects before codecs: the SHA-256 and user metadata, no codec keys.
        endpoint, access_key, secret_key = _s3_credentials()
        client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=False, region="us-east-1")
        headers = {"x-amz-meta-" + name: value for name, value in metadata.items()}
        headers["x-amz-meta-stratmaster-sha256"] = sha256(data)
        client.put_object(store.bucket, f"{tenant}/{key}", io.BytesIO(data), len(data), content_type=content_type,
                          metadata=headers)

    def test_object_from_another_tool_reads_as_identity(self, store: S3ObjectStore) -> None:
        endpoint, access_key, secret_key = _s3_credentials()
        client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=False, region="us-east-1")
        client.put_object(store.bucket, "acme/raw.txt", io.BytesIO(TEXT), len(TEXT))
        assert store.get(ACME, "raw.txt") == TEXT
        info = store.stat(ACME, "raw.txt")
        assert (info.codec, info.size, info.stored_size, info.sha256) == ("identity", len(TEXT), len(TEXT), "")

    def test_codec_travels_as_user_metadata(self, store: S3ObjectStore) -> None:
        endpoint, access_key, secret_key = _s3_credentials()
        info = store.put(ACME, "docs/big.txt", TEXT)
        client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=False, region="us-east-1")
        stat = client.stat_object(store.bucket, "acme/docs/big.txt")
        headers = {k.lower(): v for k, v in stat.metadata.items()}
        assert headers["x-amz-meta-stratmaster-codec"] == "zstd"
        assert headers["x-amz-meta-stratmaster-size"] == str(len(TEXT))
        assert stat.size == info.stored_size < len(TEXT)
        response = client.get_object(store.bucket, "acme/docs/big.txt")
        try:
            stored = response.read()
        finally:
            response.close()
            response.release_conn()
        assert zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(stored) == TEXT

    def test_objects_live_under_the_tenant_prefix(self, store: S3ObjectStore) -> None:
        endpoint, access_key, secret_key = _s3_credentials()
        store.put(ACME, "docs/a.txt", b"x", metadata={"title": "Ü"})
        client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=False, region="us-east-1")
        names = [obj.object_name for obj in client.list_objects(store.bucket, recursive=True)]
        assert names == ["acme/docs/a.txt"]
        headers = {k.lower(): v for k, v in client.stat_object(store.bucket, "acme/docs/a.txt").metadata.items()}
        assert headers["x-amz-meta-stratmaster-sha256"] == sha256(b"x")
        assert headers["x-amz-meta-title"] == "%C3%9C"

    def test_creates_a_missing_bucket(self, store: S3ObjectStore) -> None:
        endpoint, access_key, secret_key = _s3_credentials()
        fresh = S3ObjectStore(endpoint, access_key, secret_key, bucket=f"stratmaster-test-{uuid.uuid4().hex[:16]}")
        try:
            fresh.put(ACME, "k", b"v")
            assert fresh.get(ACME, "k") == b"v"
        finally:
            fresh.remove_bucket()
            fresh.close()

    def test_wrong_credentials_raise_store_error(self, store: S3ObjectStore) -> None:
        endpoint, access_key, _ = _s3_credentials()
        wrong = S3ObjectStore(endpoint, access_key, "not-the-secret", bucket=store.bucket)
        with pytest.raises(StoreError, match="S3 object store"):
            wrong.get(ACME, "k")
        assert not wrong.ping().healthy


class TestS3ObjectStoreWithoutServer:
    """Behaviour that needs no server: configuration and failing fast."""

    def test_unreachable_server_fails_fast_with_store_error(self) -> None:
        store = S3ObjectStore("127.0.0.1:1", "key", "secret", connect_timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"127\.0\.0\.1:1"):
            store.put(ACME, "k", b"v")
        assert time.monotonic() - started < 10
        health = store.ping()
        assert not health.healthy and health.name == "objects" and "127.0.0.1:1" in health.detail

    @pytest.mark.parametrize(("endpoint", "host", "secure"), [
        ("127.0.0.1:9000", "127.0.0.1:9000", False),
        ("http://minio:9000", "minio:9000", False),
        ("https://s3.example.com", "s3.example.com", True),
        ("https://s3.example.com:8443/", "s3.example.com:8443", True),
    ])
    def test_endpoint_forms(self, endpoint: str, host: str, secure: bool) -> None:
        store = S3ObjectStore(endpoint, "k", "s")
        assert (store.endpoint, store.secure) == (host, secure)

    def test_explicit_secure_wins(self) -> None:
        assert S3ObjectStore("http://minio:9000", "k", "s", secure=True).secure is True

    def test_arguments_are_checked_before_any_request(self) -> None:
        store = S3ObjectStore("127.0.0.1:1", "key", "secret")
        with pytest.raises(ValueError):
            store.put(ACME, "../x", b"v")
        with pytest.raises(ValueError):
            store.list("../other")


def test_create_object_store_picks_the_backend(tmp_path: Path) -> None:
    local = create_object_store(Settings(STRATMASTER_DATA_DIR=str(tmp_path), MINIO_ENDPOINT=""))
    assert isinstance(local, LocalFolderObjectStore) and local.root == (tmp_path / "objects").resolve()
    remote = create_object_store(Settings(STRATMASTER_DATA_DIR=str(tmp_path), MINIO_ENDPOINT="http://minio:9000",
                                          MINIO_ACCESS_KEY="k", MINIO_SECRET_KEY="s"))
    assert isinstance(remote, S3ObjectStore) and remote.endpoint == "minio:9000" and not remote.secure


def test_object_compression_settings_set_the_write_rule(tmp_path: Path) -> None:
    off = create_object_store(Settings(STRATMASTER_DATA_DIR=str(tmp_path / "off"), MINIO_ENDPOINT="",
                                       OBJECT_COMPRESSION="false"))
    assert off.put(ACME, "a.txt", TEXT).codec == "identity"
    assert off.put(ACME, "b.txt", TEXT, compress=True).codec == "zstd"  # an explicit request still wins
    on = create_object_store(Settings(STRATMASTER_DATA_DIR=str(tmp_path / "on"), MINIO_ENDPOINT="",
                                      OBJECT_ZSTD_LEVEL="19"))
    assert on.put(ACME, "a.txt", TEXT).codec == "zstd" and on.get(ACME, "a.txt") == TEXT


# --- the codec itself ---------------------------------------------------------------------------------
class TestObjectCodec:
    def test_rule(self) -> None:
        codec = ObjectCodec()
        assert codec.encode(TEXT)[1] == "zstd"
        assert codec.encode(TEXT[:1023])[1] == "identity"  # below min_bytes
        assert codec.encode(os.urandom(4096))[1] == "identity"  # saves nothing
        assert ObjectCodec(min_saving=0.0).encode(b"ab" * 600)[1] == "zstd"

    def test_decode_refuses_what_the_record_contradicts(self) -> None:
        payload, codec = ObjectCodec().encode(TEXT)
        assert ObjectCodec.decode(payload, codec, len(TEXT)) == TEXT
        with pytest.raises(ValueError, match="records 10"):
            ObjectCodec.decode(payload, codec, 10)
        with pytest.raises(ValueError, match="corrupt"):
            ObjectCodec.decode(payload[:-8], codec)
        with pytest.raises(ValueError, match="marker"):
            ObjectCodec.decode(zstandard.ZstdCompressor().compress(TEXT), "zstd")
        with pytest.raises(ValueError, match="unknown codec"):
            ObjectCodec.decode(payload, "br")
        with pytest.raises(ValueError, match="records 3"):
            ObjectCodec.decode(b"ab", "identity", 3)


# --- encryption at rest, on every backend -------------------------------------------------------
OLD_KEY = Keyring({"2026-05": b"\x01" * 32}, "2026-05")
ROTATED = Keyring({"2026-11": b"\x02" * 32, "2026-05": b"\x01" * 32}, "2026-11")


class EncryptionConformance:
    """Subclasses provide `make(keyring)` (a store on one shared location) and `raw(tenant, key)`."""

    def test_stored_bytes_are_ciphertext_and_read_back_as_the_original(self, make, raw) -> None:
        store = make(OLD_KEY)
        info = store.put(ACME, "brief.txt", TEXT)
        stored = raw(ACME, "brief.txt")
        assert b"strategy review" not in stored and stored.startswith(b"SMENC1")
        assert zstandard.ZstdDecompressor is not None and TEXT[:40] not in stored
        assert info.key_id == "2026-05" and info.size == len(TEXT) and info.sha256 == sha256(TEXT)
        assert store.get(ACME, "brief.txt") == TEXT
        stat = store.stat(ACME, "brief.txt")
        assert stat.key_id == "2026-05" and stat.size == len(TEXT) and stat.codec == "zstd"
        assert store.put(ACME, "tiny.txt", b"hi").key_id == "2026-05", "identity objects are sealed too"
        assert store.get(ACME, "tiny.txt") == b"hi"

    def test_a_rotated_keyring_reads_old_objects_and_seals_new_ones_with_the_new_key(self, make) -> None:
        make(OLD_KEY).put(ACME, "old.txt", TEXT)
        rotated = make(ROTATED)
        assert rotated.get(ACME, "old.txt") == TEXT
        assert rotated.put(ACME, "new.txt", TEXT).key_id == "2026-11"
        assert [i.key_id for i in rotated.list(ACME)] == ["2026-11", "2026-05"]
        with pytest.raises(StoreError, match="2026-11"):
            make(OLD_KEY).get(ACME, "new.txt")  # the old keyring lacks the new key

    def test_without_keys_a_sealed_object_is_refused_not_served_as_garbage(self, make) -> None:
        make(OLD_KEY).put(ACME, "sealed.txt", TEXT)
        with pytest.raises(StoreError, match="encrypted with key '2026-05'"):
            make(None).get(ACME, "sealed.txt")
        plain = make(None)
        plain.put(ACME, "plain.txt", b"plain")
        assert make(OLD_KEY).get(ACME, "plain.txt") == b"plain", "plaintext objects stay readable"

    def test_a_payload_copied_to_another_tenant_does_not_decrypt(self, make, raw, copy_raw) -> None:
        store = make(OLD_KEY)
        store.put(ACME, "secret.txt", TEXT)
        copy_raw((ACME, "secret.txt"), (GLOBEX, "secret.txt"))
        with pytest.raises(StoreError, match="fails authentication"):
            store.get(GLOBEX, "secret.txt")


class TestLocalFolderEncryption(EncryptionConformance):
    @pytest.fixture
    def make(self, tmp_path: Path):
        return lambda keyring: LocalFolderObjectStore(tmp_path / "objects", keyring=keyring)

    @pytest.fixture
    def raw(self, tmp_path: Path):
        return lambda tenant, key: (tmp_path / "objects" / tenant / key).read_bytes()

    @pytest.fixture
    def copy_raw(self, tmp_path: Path):
        def copy(source: tuple[str, str], target: tuple[str, str]) -> None:
            root = tmp_path / "objects"
            for folder in (root, root / ".meta"):
                (folder / target[0] / target[1]).parent.mkdir(parents=True, exist_ok=True)
                (folder / target[0] / target[1]).write_bytes((folder / source[0] / source[1]).read_bytes())
        return copy


@pytest.mark.s3
class TestS3Encryption(EncryptionConformance):
    @pytest.fixture
    def make(self, s3_bucket: str):
        endpoint, access_key, secret_key = _s3_credentials()
        made: list[S3ObjectStore] = []

        def make(keyring):
            made.append(S3ObjectStore(endpoint, access_key, secret_key, bucket=s3_bucket, keyring=keyring))
            return made[-1]
        yield make
        client = self.client()
        for obj in client.list_objects(s3_bucket, recursive=True):
            client.remove_object(s3_bucket, obj.object_name)
        for store in made:
            store.close()

    @staticmethod
    def client() -> Minio:
        endpoint, access_key, secret_key = _s3_credentials()
        return Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=False, region="us-east-1")

    @pytest.fixture
    def raw(self, s3_bucket: str):
        def read(tenant: str, key: str) -> bytes:
            response = self.client().get_object(s3_bucket, f"{tenant}/{key}")
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()
        return read

    @pytest.fixture
    def copy_raw(self, s3_bucket: str):
        from minio.commonconfig import CopySource

        def copy(source: tuple[str, str], target: tuple[str, str]) -> None:
            self.client().copy_object(s3_bucket, f"{target[0]}/{target[1]}", CopySource(s3_bucket, "/".join(source)))
        return copy


def test_settings_build_the_keyring_and_refuse_bad_keys(tmp_path: Path) -> None:
    import base64

    from stratmaster.settings import ConfigurationError, load_settings

    key = base64.b64encode(b"\x03" * 32).decode()
    settings = Settings(STRATMASTER_DATA_DIR=tmp_path, STRATMASTER_ENCRYPTION_KEYS=f"new={key},old={key}")
    store = create_object_store(settings)
    assert store.keyring.active == "new" and set(store.keyring.keys) == {"new", "old"}
    assert "new=" not in repr(settings) and key not in repr(settings)
    for bad, message in ((f"k={key[:-4]}", "32"), ("k", "not id=base64key"), (f"a={key},a={key}", "twice"),
                         ("k=!!!", "not base64")):
        os.environ["STRATMASTER_ENCRYPTION_KEYS"] = bad
        try:
            with pytest.raises(ConfigurationError, match="STRATMASTER_ENCRYPTION_KEYS") as refused:
                load_settings()
            assert message in str(refused.value) and key not in str(refused.value)
        finally:
            del os.environ["STRATMASTER_ENCRYPTION_KEYS"]
