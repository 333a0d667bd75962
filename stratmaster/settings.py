"""Typed settings: the only place that reads the environment.

Every backend variable is optional. Unset selects the embedded default (SQLite, an
in-process cache, the local token issuer, ...); set selects the real server. A malformed
value stops start-up with a message that names the variable, because a platform that
silently falls back to SQLite when `DATABASE_URL` has a typo loses data.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, computed_field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "production"]


class ConfigurationError(ValueError):
    """Raised when the environment holds a value the platform cannot start with."""


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "stratmaster"


def _require_scheme(value: str, schemes: tuple[str, ...], what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"must be a {what} URL ({' or '.join(s + '://' for s in schemes)}host...), got {value!r}")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError as exc:
        raise ValueError(f"has an invalid port in {value!r}") from exc
    return value


def _require_host_port(value: str) -> str:
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be host:port, got {value!r}")
    return value.strip()


class Settings(BaseSettings):
    """Platform configuration, documented in configs/production-config-template.yaml."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", populate_by_name=True)

    # --- runtime -------------------------------------------------------------------
    environment: Environment = Field("development", alias="STRATMASTER_ENV")
    data_dir: Path = Field(default_factory=_default_data_dir, alias="STRATMASTER_DATA_DIR")
    http_host: str = Field("127.0.0.1", alias="STRATMASTER_HTTP_HOST")
    http_port: int = Field(8080, ge=1, le=65535, alias="STRATMASTER_HTTP_PORT")
    metrics_port: int = Field(8090, ge=1, le=65535, alias="STRATMASTER_METRICS_PORT")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", alias="LOG_LEVEL")
    serve_config: Path = Field(Path("configs/serve.yaml"), alias="STRATMASTER_SERVE_CONFIG")

    # --- backends (unset = embedded default) ----------------------------------------
    database_url: str | None = Field(None, alias="DATABASE_URL")
    redis_url: str | None = Field(None, alias="REDIS_URL")
    keycloak_url: str | None = Field(None, alias="KEYCLOAK_URL")
    keycloak_realm: str | None = Field(None, alias="KEYCLOAK_REALM")
    keycloak_client_id: str | None = Field(None, alias="KEYCLOAK_CLIENT_ID")
    keycloak_tenant_claim: str = Field("tenant", min_length=1, max_length=128, alias="KEYCLOAK_TENANT_CLAIM")
    minio_endpoint: str | None = Field(None, alias="MINIO_ENDPOINT")
    minio_access_key: str | None = Field(None, alias="MINIO_ACCESS_KEY")
    minio_secret_key: SecretStr | None = Field(None, alias="MINIO_SECRET_KEY")
    qdrant_url: str | None = Field(None, alias="QDRANT_URL")
    opensearch_url: str | None = Field(None, alias="OPENSEARCH_URL")
    nebula_address: str | None = Field(None, alias="NEBULA_ADDRESS")
    temporal_address: str | None = Field(None, alias="TEMPORAL_ADDRESS")

    # --- Ray cluster ---------------------------------------------------------------
    # Where `stratmaster job` sends jobs: the dashboard's HTTP address (http://head:8265);
    # unset selects the local platform's dashboard. Ray reads this variable too, with a wider
    # grammar (inside a Ray job it holds the GCS host:port), so every value is accepted here
    # and cluster/jobs.py says which ones it can use.
    ray_address: str | None = Field(None, alias="RAY_ADDRESS")

    # --- storage ------------------------------------------------------------------
    object_compression: bool = Field(True, alias="OBJECT_COMPRESSION")
    object_zstd_level: int = Field(3, ge=1, le=22, alias="OBJECT_ZSTD_LEVEL")
    encryption_keys: SecretStr | None = Field(None, alias="STRATMASTER_ENCRYPTION_KEYS")

    # --- limits ----------------------------------------------------------------------
    rate_limit_rps: float = Field(100.0, ge=0, alias="RATE_LIMIT_RPS")
    rate_limit_burst: int = Field(200, ge=1, alias="RATE_LIMIT_BURST")
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024, alias="MAX_REQUEST_BYTES")

    # --- identity ------------------------------------------------------------------
    token_audience: str = Field("stratmaster", alias="STRATMASTER_TOKEN_AUDIENCE")
    token_ttl_s: int = Field(3600, ge=60, le=7 * 24 * 3600, alias="STRATMASTER_TOKEN_TTL_S")

    # --- feature flags (operations guide) ------------------------------------------
    enable_collab_live: bool = Field(False, alias="ENABLE_COLLAB_LIVE")
    enable_model_recommender_v2: bool = Field(False, alias="ENABLE_MODEL_RECOMMENDER_V2")
    integrations_available: bool = Field(False, alias="INTEGRATIONS_AVAILABLE")
    enable_response_cache_v2: bool = Field(False, alias="ENABLE_RESPONSE_CACHE_V2")
    enable_edge_cache_hints: bool = Field(False, alias="ENABLE_EDGE_CACHE_HINTS")
    enable_retrieval_benchmarks: bool = Field(False, alias="ENABLE_RETRIEVAL_BENCHMARKS")
    enable_predictive_analytics: bool = Field(False, alias="ENABLE_PREDICTIVE_ANALYTICS")
    enable_event_streaming: bool = Field(False, alias="ENABLE_EVENT_STREAMING")

    # --- validators ----------------------------------------------------------------
    @field_validator(
        "database_url", "redis_url", "keycloak_url", "keycloak_realm", "keycloak_client_id",
        "minio_endpoint", "minio_access_key", "qdrant_url", "opensearch_url",
        "nebula_address", "temporal_address", "ray_address", mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("encryption_keys", mode="before")
    @classmethod
    def _check_encryption_keys(cls, value: object) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        from stratmaster.security.encryption import Keyring

        try:
            Keyring.parse(str(raw))
        except ValueError as exc:  # the message names the entry, never the key material
            raise ValueError(f"must be id=base64key[,id=base64key...] with 32-byte keys: {exc}") from None
        return raw

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme
        if scheme.startswith("sqlite"):
            if not value.startswith(("sqlite:///", "sqlite+pysqlite:///")):
                raise ValueError(f"a SQLite URL must look like sqlite:///path, got {value!r}")
            return value
        # psycopg 3 is the one PostgreSQL driver installed; accept the common spellings.
        for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
            if value.startswith(prefix):
                value = "postgresql+psycopg://" + value[len(prefix):]
                break
        return _require_scheme(value, ("postgresql+psycopg",), "PostgreSQL")

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, value: str | None) -> str | None:
        return None if value is None else _require_scheme(value, ("redis", "rediss"), "Redis")

    @field_validator("keycloak_url", "qdrant_url", "opensearch_url")
    @classmethod
    def _check_http(cls, value: str | None) -> str | None:
        return None if value is None else _require_scheme(value.rstrip("/"), ("http", "https"), "HTTP")

    @field_validator("minio_endpoint")
    @classmethod
    def _check_minio(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "://" in value:
            return _require_scheme(value.rstrip("/"), ("http", "https"), "HTTP")
        return _require_host_port(value)

    @field_validator("temporal_address")
    @classmethod
    def _check_temporal(cls, value: str | None) -> str | None:
        return None if value is None else _require_host_port(value)

    @field_validator("nebula_address")
    @classmethod
    def _check_nebula(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return ",".join(_require_host_port(part) for part in value.split(","))

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Serve replicas run in other working directories: only an absolute path is
        # the same folder for every process.
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.keycloak_url and not (self.keycloak_realm and self.keycloak_client_id):
            raise ValueError("KEYCLOAK_URL is set, so KEYCLOAK_REALM and KEYCLOAK_CLIENT_ID must be set too")
        if self.minio_endpoint and not (self.minio_access_key and self.minio_secret_key):
            raise ValueError("MINIO_ENDPOINT is set, so MINIO_ACCESS_KEY and MINIO_SECRET_KEY must be set too")
        if self.environment == "production":
            if self.minio_secret_key and self.minio_secret_key.get_secret_value() == "minioadmin":
                raise ValueError("MINIO_SECRET_KEY is the well-known default 'minioadmin'; refused in production")
            if not self.database_url:
                raise ValueError("DATABASE_URL must be set in production (SQLite is for one machine)")
            if self.encryption_keys is None:
                raise ValueError("STRATMASTER_ENCRYPTION_KEYS must be set in production "
                                 "(objects are encrypted at rest)")
            if self.keycloak_url and not self.keycloak_url.startswith("https://"):
                raise ValueError("KEYCLOAK_URL must be https:// in production (its keys decide who gets in)")
        return self

    # --- derived -------------------------------------------------------------------
    @computed_field  # type: ignore[prop-decorator]
    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'stratmaster.db'}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def database_backend(self) -> str:
        return "postgresql" if self.database_url and self.database_url.startswith("postgresql") else "sqlite"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cache_backend(self) -> str:
        return "redis" if self.redis_url else "in-process-lru"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def identity_backend(self) -> str:
        return "keycloak" if self.keycloak_url else "local-issuer"

    def keyring(self) -> Any:
        """The object stores' encryption keys (a `Keyring`), or None: objects are stored in plaintext."""
        if self.encryption_keys is None:
            return None
        from stratmaster.security.encryption import Keyring

        return Keyring.parse(self.encryption_keys.get_secret_value())

    @property
    def keycloak_issuer(self) -> str | None:
        """Keycloak's issuer for the realm: the `iss` of its tokens and the base of its discovery document."""
        if not self.keycloak_url:
            return None
        return f"{self.keycloak_url.rstrip('/')}/realms/{self.keycloak_realm}"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    def backends(self) -> dict[str, dict[str, object]]:
        """Which implementation each backend kind uses: logged once at start-up."""
        def pick(url: str | None, server: str, embedded: str) -> dict[str, object]:
            return {"backend": server if url else embedded, "embedded": url is None}

        return {
            "database": pick(self.database_url, "postgresql", "sqlite"),
            "cache": pick(self.redis_url, "redis", "in-process-lru"),
            "identity": pick(self.keycloak_url, "keycloak", "local-issuer"),
            "objects": pick(self.minio_endpoint, "minio", "local-folder"),
            "vectors": pick(self.qdrant_url, "qdrant", "qdrant-local"),
            "keyword": pick(self.opensearch_url, "opensearch", "embedded-fulltext"),
            "graph": pick(self.nebula_address, "nebulagraph", "embedded-graph"),
            "workflows": pick(self.temporal_address, "temporal", "in-process-runner"),
        }

    def feature_flags(self) -> dict[str, bool]:
        return {
            name.upper(): getattr(self, name)
            for name in type(self).model_fields
            if name.startswith(("enable_", "integrations_"))
        }


def _variable_name(loc: tuple[object, ...]) -> str:
    if not loc:
        return "configuration"
    field = Settings.model_fields.get(str(loc[0]))
    return (field.alias if field and field.alias else str(loc[0])).upper()


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise ConfigurationError naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            name = _variable_name(tuple(error["loc"]))
            problems.append(message if name == "configuration" else f"{name}: {message}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


_Model = TypeVar("_Model", bound=BaseModel)


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """`loc.path: message` for every problem, joined: an error a person can act on."""
    return "; ".join(f"{prefix}{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def load_yaml_model(path: Path, model: type[_Model], prepare: Callable[[Any], Any] | None = None) -> _Model:
    """A YAML file validated by a pydantic model; ConfigurationError naming the file and each field."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        return model.model_validate(prepare(raw) if prepare else raw)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc}") from None
    except ValidationError as exc:
        raise ConfigurationError(f"{path}: {describe_validation_error(exc)}") from None
