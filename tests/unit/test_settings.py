"""Settings: unset backends select embedded defaults; malformed ones name the variable."""

from __future__ import annotations

import pytest

from stratmaster.settings import ConfigurationError, load_settings

BACKEND_VARS = ("DATABASE_URL", "REDIS_URL", "KEYCLOAK_URL", "KEYCLOAK_REALM", "KEYCLOAK_CLIENT_ID",
                "MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "QDRANT_URL",
                "OPENSEARCH_URL", "NEBULA_ADDRESS", "TEMPORAL_ADDRESS", "STRATMASTER_ENV",
                "STRATMASTER_HTTP_HOST", "STRATMASTER_HTTP_PORT", "STRATMASTER_METRICS_PORT")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in BACKEND_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STRATMASTER_DATA_DIR", str(tmp_path))


def test_unset_backends_select_embedded_defaults(tmp_path):
    settings = load_settings()
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'stratmaster.db'}"
    assert all(choice["embedded"] for choice in settings.backends().values())
    assert settings.cache_backend == "in-process-lru"
    assert settings.http_host == "127.0.0.1" and settings.http_port == 8080


def test_set_backends_select_servers(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://app:secret@127.0.0.1:5432/strat")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/0")
    settings = load_settings()
    # Common spellings are normalised to the installed psycopg 3 driver.
    assert settings.database_url == "postgresql+psycopg://app:secret@127.0.0.1:5432/strat"
    assert settings.backends()["database"] == {"backend": "postgresql", "embedded": False}
    assert settings.backends()["cache"] == {"backend": "redis", "embedded": False}


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("DATABASE_URL", "mysql://db/x", "DATABASE_URL"),
    ("REDIS_URL", "http://127.0.0.1:6379", "REDIS_URL"),
    ("REDIS_URL", "redis://127.0.0.1:notaport", "REDIS_URL"),
    ("QDRANT_URL", "qdrant:6333", "QDRANT_URL"),
    ("OPENSEARCH_URL", "ftp://search", "OPENSEARCH_URL"),
    ("TEMPORAL_ADDRESS", "temporal", "TEMPORAL_ADDRESS"),
    ("NEBULA_ADDRESS", "graphd:9669,graphd2", "NEBULA_ADDRESS"),
    ("STRATMASTER_HTTP_PORT", "eighty", "STRATMASTER_HTTP_PORT"),
    ("ENABLE_COLLAB_LIVE", "perhaps", "ENABLE_COLLAB_LIVE"),
])
def test_malformed_variable_is_named(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=expected):
        load_settings()


def test_blank_backend_variable_means_unset(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "  ")
    assert load_settings().database_url is None


def test_partial_keycloak_and_minio_configuration_is_refused(monkeypatch):
    monkeypatch.setenv("KEYCLOAK_URL", "http://127.0.0.1:8081")
    with pytest.raises(ConfigurationError, match="KEYCLOAK_REALM"):
        load_settings()
    monkeypatch.delenv("KEYCLOAK_URL")
    monkeypatch.setenv("MINIO_ENDPOINT", "127.0.0.1:9000")
    with pytest.raises(ConfigurationError, match="MINIO_ACCESS_KEY"):
        load_settings()


def test_production_refuses_insecure_defaults(monkeypatch):
    monkeypatch.setenv("STRATMASTER_ENV", "production")
    with pytest.raises(ConfigurationError, match="DATABASE_URL must be set in production"):
        load_settings()
    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1/x")
    monkeypatch.setenv("MINIO_ENDPOINT", "127.0.0.1:9000")
    monkeypatch.setenv("MINIO_ACCESS_KEY", "minioadmin")
    monkeypatch.setenv("MINIO_SECRET_KEY", "minioadmin")
    with pytest.raises(ConfigurationError, match="minioadmin"):
        load_settings()


def test_every_feature_flag_of_the_guide_is_a_typed_boolean(monkeypatch):
    flags = ("ENABLE_COLLAB_LIVE", "ENABLE_MODEL_RECOMMENDER_V2", "INTEGRATIONS_AVAILABLE",
             "ENABLE_RESPONSE_CACHE_V2", "ENABLE_EDGE_CACHE_HINTS", "ENABLE_RETRIEVAL_BENCHMARKS",
             "ENABLE_PREDICTIVE_ANALYTICS", "ENABLE_EVENT_STREAMING")
    assert set(load_settings().feature_flags()) == set(flags)
    monkeypatch.setenv("ENABLE_EVENT_STREAMING", "true")
    assert load_settings().feature_flags()["ENABLE_EVENT_STREAMING"] is True


def test_configuration_template_documents_every_variable():
    from pathlib import Path

    import yaml

    from stratmaster.settings import Settings

    template = yaml.safe_load((Path(__file__).parents[2] / "configs" / "production-config-template.yaml").read_text())
    documented = {entry["name"] for section in template["variables"].values() for entry in section}
    assert documented == {field.alias for field in Settings.model_fields.values()}
