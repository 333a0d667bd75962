"""The router's catalogue: the shipped file loads; every mistake is named by file, path and problem."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from stratmaster.router.catalogue import CatalogueError, load_catalogue, parse_catalogue

SHIPPED = Path(__file__).parents[2] / "configs" / "router" / "models.yaml"

BASE = {
    "providers": {
        "local": {"kind": "local", "models": [{"name": "local-extractive"}]},
        "remote": {"kind": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
                   "models": [{"name": "big", "input_per_1k": 0.01, "output_per_1k": 0.03},
                              {"name": "small", "input_per_1k": 0.001, "output_per_1k": 0.002}]},
    },
    "policies": {"default": {"default": {"primary": "local-extractive"},
                             "plan": {"primary": "big", "fallbacks": ["small", "local-extractive"]}},
                 "acme": {"default": {"primary": "small"}}},
}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def changed(edit) -> dict:
    data = copy.deepcopy(BASE)
    edit(data)
    return data


def test_the_shipped_catalogue_loads_and_is_offline_by_default():
    catalogue = load_catalogue(SHIPPED)
    assert "local-extractive" in catalogue.model_names()
    _, policy = catalogue.policy("anyone", "default")
    assert policy.primary == "local-extractive"
    # Every task the issue names has a policy whose last resort works offline.
    for task in ("plan", "synthesize", "verify", "summarize", "judge"):
        path, policy = catalogue.policy("anyone", task)
        assert path == f"policies.default.{task}" and policy.candidates[-1] == "local-extractive"


def test_policy_lookup_prefers_the_tenant_then_the_platform(tmp_path):
    catalogue = load_catalogue(write(tmp_path, BASE))
    assert catalogue.policy("acme", "plan")[0] == "policies.acme.default"
    assert catalogue.policy("globex", "plan")[0] == "policies.default.plan"
    assert catalogue.policy("globex", "judge")[0] == "policies.default.default"


@pytest.mark.parametrize(("edit", "path", "problem"), [
    (lambda d: d["policies"]["default"]["plan"]["fallbacks"].__setitem__(0, "gpt-9"),
     "policies.default.plan.fallbacks[0]", "unknown model 'gpt-9'"),
    (lambda d: d["policies"]["acme"]["default"].__setitem__("primary", "nope"),
     "policies.acme.default.primary", "unknown model 'nope'"),
    (lambda d: d["policies"]["default"].pop("default"), "policies.default.default", "required"),
    (lambda d: d["providers"]["remote"]["models"][1].__setitem__("input_per_1k", -1),
     "providers.remote.models[1].input_per_1k", "greater than or equal to 0"),
    (lambda d: d["providers"]["remote"].pop("base_url"), "providers.remote.base_url", "required for kind"),
    (lambda d: d["providers"]["remote"].__setitem__("base_url", "ftp://x"), "providers.remote.base_url",
     "http(s) URL"),
    (lambda d: d["providers"]["remote"].__setitem__("kind", "grpc"), "providers.remote.kind", "'openai-compatible'"),
    (lambda d: d["providers"]["remote"].__setitem__("api_key_env", "my key"), "providers.remote.api_key_env",
     "environment variable"),
    (lambda d: d["providers"]["remote"]["models"].append({"name": "local-extractive"}),
     "providers.remote.models[2].name", "already a model of providers.local"),
    (lambda d: d["providers"]["remote"].__setitem__("timeout", 3), "providers.remote.timeout", "Extra inputs"),
    (lambda d: d["policies"]["default"]["plan"]["fallbacks"].append("big"),
     "policies.default.plan.fallbacks[2]", "listed twice"),
    (lambda d: d["policies"]["default"]["plan"].__setitem__("constraints", {"max_temperature": 3}),
     "policies.default.plan.constraints.max_temperature", "less than or equal to 2"),
])
def test_errors_name_the_file_the_path_and_the_problem(tmp_path, edit, path, problem):
    file = write(tmp_path, changed(edit))
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(file)
    message = str(caught.value)
    assert f"{file}: {path}: " in message and problem in message, message


def test_unreadable_and_malformed_files_are_named(tmp_path):
    with pytest.raises(CatalogueError, match="missing.yaml: cannot read"):
        load_catalogue(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [unclosed\n")
    with pytest.raises(CatalogueError, match="bad.yaml: not valid YAML"):
        load_catalogue(bad)
    with pytest.raises(CatalogueError, match=r"x.yaml: \(top level\): must be a mapping"):
        parse_catalogue(["a list"], "x.yaml")


def test_every_problem_is_reported_at_once(tmp_path):
    def two(d):
        d["policies"]["default"]["plan"]["primary"] = "a"
        d["policies"]["acme"]["default"]["primary"] = "b"

    with pytest.raises(CatalogueError) as caught:
        load_catalogue(write(tmp_path, changed(two)))
    assert len(str(caught.value).splitlines()) == 2
