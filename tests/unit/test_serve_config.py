"""configs/serve.yaml is a valid Serve config sized for a 2-core machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from cluster.serve_config import load_serve_config
from deployments.args import SERVICES, ingress_deployment_name
from stratmaster.settings import ConfigurationError, load_settings

CONFIG = Path(__file__).parents[2] / "configs" / "serve.yaml"


@pytest.fixture
def config() -> ServeDeploySchema:
    return ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text()))


def test_gateway_and_one_application_per_service_each_on_its_own_prefix(config):
    prefixes = {app.name: app.route_prefix for app in config.applications}
    assert prefixes == {"gateway": "/", **{s: f"/{s}" for s in SERVICES}}


def test_every_deployment_is_autoscaled_bounded_and_fractional(config):
    for app in config.applications:
        assert app.deployments, app.name
        for deployment in app.deployments:
            assert deployment.max_ongoing_requests > 0
            assert 0 < deployment.ray_actor_options.num_cpus <= 0.2
            if deployment.name in ("KnowledgeIndex", "ResearchIngress"):
                # Owners of single-process state (embedded stores; the embedded research
                # runner) are pinned to exactly one replica (see the YAML comments).
                assert deployment.num_replicas == 1
                continue
            autoscaling = deployment.autoscaling_config
            if not isinstance(autoscaling, dict):
                autoscaling = autoscaling.model_dump()
            assert 1 <= autoscaling["min_replicas"] <= autoscaling["max_replicas"]
    assert config.http_options.request_timeout_s and config.http_options.port == 8080
    assert config.http_options.host == "127.0.0.1"


def test_ingress_deployment_names_match_what_the_gateway_calls(config):
    for app in config.applications:
        if app.name in SERVICES:
            assert app.deployments[0].name == ingress_deployment_name(app.name)


def test_settings_override_the_listening_address(monkeypatch, tmp_path):
    monkeypatch.setenv("STRATMASTER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STRATMASTER_HTTP_PORT", "18123")
    loaded = load_serve_config(CONFIG, load_settings())
    assert loaded.http_options.port == 18123


def test_a_typo_in_builder_args_is_refused_before_deploying(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATMASTER_DATA_DIR", str(tmp_path))
    raw = yaml.safe_load(CONFIG.read_text())
    raw["applications"][1]["args"] = {"handle_timeout": 3}
    broken = tmp_path / "serve.yaml"
    broken.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigurationError, match="application 'knowledge' args: handle_timeout"):
        load_serve_config(broken, load_settings())
