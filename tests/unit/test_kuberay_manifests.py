"""kuberay/ validated without a cluster: KubeRay CRD schemas, Kubernetes schemas, Serve's schema.

KubeRay's custom resources are checked against the v1 openAPIV3Schema of the CRDs in
../shared/kuberay-crds (jsonschema, unknown fields refused), standard objects with
kubernetes-validate at cluster.kuberay.KUBERNETES_VERSION, the PodMonitor by a schema of our
own (its CRD is not here), every serveConfigV2 by ServeDeploySchema and the builders' argument
models, and the kustomizations by rendering them (cluster.kuberay.build_kustomization).
"""

from __future__ import annotations

import copy
import os
import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cluster import kuberay
from cluster.kuberay import CRD_DIR, KUBERAY_DIR, ROOT, ManifestError, build_kustomization, validate_object
from cluster.local import SERVE_PROCESS_ENV

pytestmark = pytest.mark.skipif(not CRD_DIR.exists(), reason=f"KubeRay CRDs not found at {CRD_DIR}")

PRODUCTION = KUBERAY_DIR / "overlays" / "production"
TEMPLATE = ROOT / "configs" / "production-config-template.yaml"
RAY_KINDS = ("RayService", "RayCluster", "RayJob")


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return build_kustomization(KUBERAY_DIR).objects


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return build_kustomization(PRODUCTION, env_fallback_suffix=".example").objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def cluster_specs(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    return {"RayService": lambda: spec["rayClusterConfig"], "RayJob": lambda: spec["rayClusterSpec"],
            "RayCluster": lambda: spec}[obj["kind"]]()


def ray_containers(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(group, container, rayStartParams) of the Ray container of every group."""
    spec = cluster_specs(obj)
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    return [(name, group["template"]["spec"]["containers"][0], group.get("rayStartParams", {}))
            for name, group in groups]


def serve_config(obj: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(obj["spec"]["serveConfigV2"])


# --- the whole tree ---------------------------------------------------------------------------

def test_every_manifest_kustomization_and_generated_block_checks_clean():
    # The same check as `python -m cluster.kuberay check`: drift, every kustomization rendered and
    # each object validated, every manifest file referenced by a kustomization.
    assert kuberay.check_all() == []


@pytest.mark.parametrize("overlay", [KUBERAY_DIR, PRODUCTION], ids=["base", "production"])
def test_each_rendered_object_is_valid(overlay):
    objects = build_kustomization(overlay, env_fallback_suffix=".example").objects
    kinds = {o["kind"] for o in objects}
    assert {"RayService", "RayCluster", "RayJob", "PodMonitor", "ConfigMap", "Secret", "Job",
            "PersistentVolumeClaim"} <= kinds
    for obj in objects:
        validate_object(obj, str(overlay))


def test_kustomization_references_exist_and_cover_every_manifest():
    referenced: set[Path] = set()
    for folder in kuberay.kustomization_folders():
        spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
        for resource in spec.get("resources", []):
            assert (folder / resource).exists(), f"{folder}/kustomization.yaml: {resource} does not exist"
        for generator in spec.get("secretGenerator", []) + spec.get("configMapGenerator", []):
            for env in generator.get("envs", []):
                assert (folder / env).exists() or (folder / f"{env}.example").exists(), env
        referenced |= {f.resolve() for f in build_kustomization(folder, ".example").files}
    unreferenced = [p for p in kuberay.manifest_files() if p.resolve() not in referenced]
    assert unreferenced == []


def test_a_missing_resource_is_named(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: [rayservice.yaml, nothere.yaml]\n")
    (tmp_path / "rayservice.yaml").write_text((KUBERAY_DIR / "rayservice.yaml").read_text())
    with pytest.raises(ManifestError, match=r"resource 'nothere.yaml' does not exist"):
        build_kustomization(tmp_path)


# --- deliberately broken manifests are rejected, readably -------------------------------------------

def test_broken_rayservice_is_rejected_naming_field_and_problem(base):
    broken = copy.deepcopy(one(base, "RayService", "stratmaster"))
    group = broken["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    group["minReplicas"] = "one"
    group["maxReplica"] = 3  # a typo the API server would silently prune
    with pytest.raises(ManifestError) as caught:
        validate_object(broken, "kuberay/rayservice.yaml")
    message = str(caught.value)
    assert message.startswith("kuberay/rayservice.yaml: RayService/stratmaster: ")
    assert "spec.rayClusterConfig.workerGroupSpecs[0].minReplicas: 'one' is not of type 'integer'" in message
    assert "spec.rayClusterConfig.workerGroupSpecs[0]: Additional properties are not allowed " \
           "('maxReplica' was unexpected)" in message


def test_broken_rayjob_is_rejected(base):
    broken = copy.deepcopy(one(base, "RayJob", "stratmaster-eval-sweep"))
    broken["spec"]["shutdownAfterJobFinishes"] = "yes"
    del broken["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["groupName"]
    with pytest.raises(ManifestError) as caught:
        validate_object(broken, "kuberay/rayjob-eval-sweep.yaml")
    assert "spec.shutdownAfterJobFinishes: 'yes' is not of type 'boolean'" in str(caught.value)
    assert "spec.rayClusterSpec.workerGroupSpecs[0]: 'groupName' is a required property" in str(caught.value)


def test_broken_serve_config_is_rejected_by_servedeployschema(base):
    broken = copy.deepcopy(one(base, "RayService", "stratmaster"))
    config = serve_config(broken)
    config["applications"][0]["deployments"][0]["max_ongoing_requests"] = -1
    broken["spec"]["serveConfigV2"] = yaml.safe_dump(config)
    with pytest.raises(ManifestError, match=r"spec.serveConfigV2: serveConfigV2 fails ServeDeploySchema: "
                                            r"applications.0.deployments.0.max_ongoing_requests: "):
        validate_object(broken, "rayservice.yaml")


def test_unknown_serve_field_is_rejected_though_serve_would_ignore_it(base):
    broken = copy.deepcopy(one(base, "RayService", "stratmaster"))
    config = serve_config(broken)
    config["applications"][0]["deployments"][0]["max_ongoing_request"] = 8
    broken["spec"]["serveConfigV2"] = yaml.safe_dump(config)
    with pytest.raises(ManifestError, match=r"fields Serve does not know \(it would ignore them\): "
                                            r"applications\[0\]\.deployments\[0\]\.max_ongoing_request"):
        validate_object(broken, "rayservice.yaml")


def test_builder_args_are_checked_by_the_builders_model(base):
    broken = copy.deepcopy(one(base, "RayService", "stratmaster"))
    config = serve_config(broken)
    router = next(app for app in config["applications"] if app["name"] == "router")
    router["args"]["handle_timeout_s"] = "soon"
    broken["spec"]["serveConfigV2"] = yaml.safe_dump(config)
    with pytest.raises(ManifestError, match=r"application 'router' args: handle_timeout_s: Input should be a valid "
                                            r"number"):
        validate_object(broken, "rayservice.yaml")


def test_loopback_proxy_is_rejected(base):
    broken = copy.deepcopy(one(base, "RayService", "stratmaster"))
    config = serve_config(broken)
    config["http_options"]["host"] = "127.0.0.1"
    broken["spec"]["serveConfigV2"] = yaml.safe_dump(config)
    with pytest.raises(ManifestError, match=r"http_options.host is '127.0.0.1'; "
                                            r"on KubeRay the proxy must bind 0.0.0.0"):
        validate_object(broken, "rayservice.yaml")


def test_broken_standard_objects_are_rejected_by_kubernetes_schema(base):
    job = copy.deepcopy(one(base, "Job", "stratmaster-migrate"))
    job["spec"]["template"]["spec"]["containers"][0]["command"] = "stratmaster migrate upgrade"
    with pytest.raises(ManifestError, match=re.escape(
            "Job/stratmaster-migrate: spec.template.spec.containers[0].command: 'stratmaster migrate upgrade' is "
            f"not of type 'array', 'null' (Kubernetes {kuberay.KUBERNETES_VERSION} schema)")):
        validate_object(job, "migrate-job.yaml")
    config = copy.deepcopy(one(base, "ConfigMap", "stratmaster-config"))
    config["data"]["STRATMASTER_HTTP_PORT"] = 8080  # unquoted: a number, which a ConfigMap refuses
    with pytest.raises(ManifestError, match=r"data.STRATMASTER_HTTP_PORT: 8080 is not of type 'string'"):
        validate_object(config, "configmap.yaml")


def test_podmonitor_has_no_kubernetes_schema_so_our_own_checks_it(base):
    monitor = one(base, "PodMonitor", "stratmaster-ray")
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(monitor, kuberay.KUBERNETES_VERSION, strict=True)
    broken = copy.deepcopy(monitor)
    broken["spec"]["podMetricsEndpoints"][0]["interval"] = "30 seconds"
    broken["spec"]["podMetricEndpoints"] = []
    with pytest.raises(ManifestError) as caught:
        validate_object(broken, "podmonitor.yaml")
    assert "spec.podMetricsEndpoints[0].interval: '30 seconds' does not match" in str(caught.value)
    assert "('podMetricEndpoints' was unexpected)" in str(caught.value)


# --- serveConfigV2 is configs/serve.yaml ----------------------------------------------------------

def test_serve_config_is_serve_yaml_with_kuberay_host_and_proxy(base):
    generated = serve_config(one(base, "RayService", "stratmaster"))
    source = yaml.safe_load((ROOT / "configs" / "serve.yaml").read_text())
    assert generated["http_options"]["host"] == "0.0.0.0"
    assert generated["proxy_location"] == "EveryNode"
    source["http_options"]["host"] = "0.0.0.0"
    source["proxy_location"] = "EveryNode"
    assert generated == source


def test_drift_from_serve_yaml_fails_with_the_command_to_regenerate(tmp_path):
    # Another engineer changes a router argument in configs/serve.yaml and forgets the manifest.
    changed = (ROOT / "configs" / "serve.yaml").read_text().replace("args: {handle_timeout_s: 60}",
                                                                   "args: {handle_timeout_s: 90}")
    assert "handle_timeout_s: 90" in changed
    source = tmp_path / "serve.yaml"
    source.write_text(changed)
    with pytest.raises(ManifestError) as caught:
        kuberay.check_drift(KUBERAY_DIR / "rayservice.yaml", source)
    assert "serveConfigV2 is out of date with serve.yaml" in str(caught.value)
    assert "Regenerate it with `.venv/bin/python -m cluster.kuberay render`" in str(caught.value)
    # ...and rendering picks the change up.
    rendered = kuberay.render_rayservice((KUBERAY_DIR / "rayservice.yaml").read_text(), source)
    router = next(a for a in serve_config(yaml.safe_load(rendered))["applications"] if a["name"] == "router")
    assert router["args"] == {"handle_timeout_s": 90}


# --- what the platform needs from its pods -----------------------------------------------------------

def test_serve_port_and_metrics_port_agree_everywhere(base):
    service = one(base, "RayService", "stratmaster")
    config = one(base, "ConfigMap", "stratmaster-config")["data"]
    port = serve_config(service)["http_options"]["port"]
    assert int(config["STRATMASTER_HTTP_PORT"]) == port
    for obj in by_kind(base, "RayService") + by_kind(base, "RayCluster") + by_kind(base, "RayJob"):
        for group, container, params in ray_containers(obj):
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports["metrics"] == int(params["metrics-export-port"]) == int(config["STRATMASTER_METRICS_PORT"])
            if obj["kind"] == "RayService":
                assert ports["serve"] == port, group


def test_every_ray_container_gets_the_serve_env_config_and_secret(base):
    for obj in by_kind(base, "RayService") + by_kind(base, "RayCluster") + by_kind(base, "RayJob"):
        for group, container, _ in ray_containers(obj):
            env = {e["name"]: e["value"] for e in container["env"]}
            assert {k: env.get(k) for k in SERVE_PROCESS_ENV} == SERVE_PROCESS_ENV, (obj["metadata"]["name"], group)
            sources = [next(iter(s.values()))["name"] for s in container["envFrom"]]
            assert sources == ["stratmaster-config", "stratmaster-secrets"]
            assert {"requests", "limits"} <= set(container["resources"])
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert mounts["data"] == "/home/ray/data"


def test_no_manifest_sets_the_local_loopback_switch():
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 pins a node to 127.0.0.1: right for `make run`, fatal here.
    for path in sorted(KUBERAY_DIR.rglob("*")):
        if path.is_file():
            assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in path.read_text(), path


def test_heads_run_no_work_and_serve_the_dashboard_workers_autoscale(base):
    for obj in by_kind(base, "RayService") + by_kind(base, "RayCluster") + by_kind(base, "RayJob"):
        spec = cluster_specs(obj)
        assert spec["enableInTreeAutoscaling"] is True
        assert spec["rayVersion"] == kuberay_ray_version()
        head = spec["headGroupSpec"]["rayStartParams"]
        assert head["num-cpus"] == "0" and head["dashboard-host"] == "0.0.0.0"
        for group in spec["workerGroupSpecs"]:
            assert group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
            assert group["maxReplicas"] > group["minReplicas"]


def test_rayservice_probes_check_raylet_gcs_and_the_workers_proxy(base):
    service = one(base, "RayService", "stratmaster")
    assert service["spec"]["excludeHeadPodFromServeSvc"] is True  # traffic through the workers' proxies
    port = serve_config(service)["http_options"]["port"]
    for group, container, _ in ray_containers(service):
        readiness = " ".join(container["readinessProbe"]["exec"]["command"])
        assert "api/local_raylet_healthz" in readiness
        assert ("api/gcs_healthz" in readiness) == (group == "head")
        # EveryNode: a worker takes traffic only once its own proxy answers.
        assert (f"localhost:{port}/-/healthz" in readiness) == (group != "head")
        assert "livenessProbe" in container


def test_rayjobs_run_the_pipelines_and_clean_up(base):
    from pipelines.common import argument_parser

    jobs = {o["metadata"]["labels"]["stratmaster.io/job"]: o for o in by_kind(base, "RayJob")}
    expected = {"retrieval-benchmark": ("pipelines.retrieval_benchmark", "configs/benchmarks/cisi.yaml"),
                "eval-sweep": ("pipelines.eval_sweep", "configs/sweeps/cisi-fusion.yaml")}
    assert set(jobs) == set(expected)
    for name, (module, config) in expected.items():
        spec = jobs[name]["spec"]
        assert spec["shutdownAfterJobFinishes"] is True
        assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0
        # KubeRay pastes the entrypoint unquoted into the submitter's shell command line: an
        # operator (`cd X && python ...`) would run its second half in the submitter pod.
        assert not re.search(r"[;&|<>`$()]", spec["entrypoint"]), spec["entrypoint"]
        words = shlex.split(spec["entrypoint"])
        assert words[:3] == ["python", "-m", module]
        assert (ROOT / Path(*module.split("."))).with_suffix(".py").exists()
        args = argument_parser(module, None, config).parse_args(words[3:])
        assert args.config == Path("/home/ray/stratmaster") / config and (ROOT / config).exists()
        assert args.tenant and args.output_dir.is_absolute()
        assert str(args.output_dir).startswith("/home/ray/data/")  # the shared volume: results outlive the job


def test_migration_job_upgrades_with_the_platforms_env(base):
    job = one(base, "Job", "stratmaster-migrate")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["stratmaster", "migrate", "upgrade"]
    assert [next(iter(s.values()))["name"] for s in container["envFrom"]] == ["stratmaster-config",
                                                                              "stratmaster-secrets"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_every_object_is_in_one_apply_stage(base):
    stages = {(o["kind"], o["metadata"]["name"]): o["metadata"]["labels"]["stratmaster.io/apply"] for o in base}
    assert set(stages.values()) == {"pre-deploy", "platform", "on-demand"}
    assert stages[("Job", "stratmaster-migrate")] == "pre-deploy"
    assert stages[("ConfigMap", "stratmaster-config")] == stages[("Secret", "stratmaster-secrets")] == "pre-deploy"
    assert stages[("RayService", "stratmaster")] == "platform"
    assert {v for (kind, _), v in stages.items() if kind == "RayJob"} == {"on-demand"}


def test_podmonitor_selects_every_ray_pod_by_its_metrics_port(base):
    monitor = one(base, "PodMonitor", "stratmaster-ray")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
    for obj in by_kind(base, "RayService") + by_kind(base, "RayCluster") + by_kind(base, "RayJob"):
        spec = cluster_specs(obj)
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            labels = group["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), obj["metadata"]["name"]


# --- environment: the template's variables, in the ConfigMap or the Secret ---------------------------

def template_variables() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(TEMPLATE.read_text())["variables"]
    return {v["name"]: v for group in groups.values() for v in group}


def router_key_variables() -> set[str]:
    catalogue = yaml.safe_load((ROOT / "configs" / "router" / "models.yaml").read_text())

    def walk(node: Any) -> set[str]:
        if isinstance(node, dict):
            found = {node["api_key_env"]} if isinstance(node.get("api_key_env"), str) else set()
            return found.union(*(walk(v) for v in node.values()))
        if isinstance(node, list):
            return set().union(*(walk(v) for v in node))
        return set()

    return walk(catalogue)


def environment(objects: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    config = one(objects, "ConfigMap", "stratmaster-config")["data"]
    secret = one(objects, "Secret", "stratmaster-secrets")["stringData"]
    return config, secret


def test_every_template_variable_is_in_the_configmap_or_the_secret(base):
    config, secret = environment(base)
    variables = template_variables()
    assert not set(config) & set(secret)
    # RAY_ADDRESS: Ray sets it inside the cluster; the evals service finds the dashboard itself.
    missing = set(variables) - {"RAY_ADDRESS"} - set(config) - set(secret)
    assert not missing, (f"{sorted(missing)} in {TEMPLATE.name} but not deployed: add to kuberay/configmap.yaml "
                         "(kuberay/secret.yaml and overlays/production/secrets.env.example if it holds a credential)")
    assert "RAY_ADDRESS" not in set(config) | set(secret)
    assert {name for name, v in variables.items() if v.get("secret")} <= set(secret)
    assert set(config) | set(secret) <= set(variables) | router_key_variables()


@pytest.mark.parametrize("overlay,env", [(KUBERAY_DIR, "development"), (PRODUCTION, "production")],
                         ids=["base", "production"])
def test_settings_accept_the_deployed_environment(overlay, env):
    from stratmaster.settings import load_settings

    config, secret = environment(build_kustomization(overlay, env_fallback_suffix=".example").objects)
    known = set(template_variables())
    settings = load_settings(**{k: v for k, v in {**config, **secret}.items() if k in known})
    assert settings.environment == env
    assert str(settings.data_dir) == "/home/ray/data"
    if env == "production":
        # Production refuses SQLite, and the embedded stores have a single owner: servers for all.
        # Workflows: research runs have no durable runner yet, TEMPORAL_ADDRESS may stay unset.
        assert {k for k, v in settings.backends().items() if v["embedded"]} <= {"workflows"}


def test_production_overlay_sets_namespace_image_and_secrets_from_its_env_file(production):
    assert {o["metadata"].get("namespace") for o in production} == {"stratmaster"}
    images = {c["image"] for o in production for c in kuberay._containers(o)}
    assert images == {"registry.example.com/stratmaster:0.1.0"}
    secret = one(production, "Secret", "stratmaster-secrets")
    assert secret["metadata"]["labels"]["stratmaster.io/apply"] == "pre-deploy"
    example = (PRODUCTION / "secrets.env.example").read_text()
    assert secret["stringData"]["DATABASE_URL"] in example
    assert (PRODUCTION / ".gitignore").read_text().count("secrets.env") >= 1


# --- the image -------------------------------------------------------------------------------------

def kuberay_ray_version() -> str:
    import ray

    return ray.__version__


def test_dockerfile_base_image_matches_ray_and_python_and_copies_what_exists():
    import sys

    dockerfile = (ROOT / "Dockerfile").read_text()
    (base_image,) = re.findall(r"^ARG RAY_IMAGE=(\S+)$", dockerfile, re.M)
    assert base_image.startswith(f"rayproject/ray:{kuberay_ray_version()}-py{sys.version_info.major}"
                                 f"{sys.version_info.minor}")
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert {".venv", ".git", "**/secrets.env"} <= set(ignored)
    for line in re.findall(r"^COPY (.+)$", dockerfile, re.M):
        words = [w for w in line.split() if not w.startswith("--")]
        if "--from=" in line:
            continue
        for source in words[:-1]:
            if source != ".":
                assert (ROOT / source).exists(), source
                assert source not in ignored, source
    # The project install needs these in the build context.
    for needed in ("pyproject.toml", "README.md", "configs", "stratmaster", "deployments", "pipelines", "cluster"):
        assert needed not in ignored and (ROOT / needed).exists(), needed
    assert "python -m stratmaster.assets verify" in dockerfile


def test_benchmark_datasets_land_where_the_configs_look_in_the_image():
    dockerfile = (ROOT / "Dockerfile").read_text()
    (workdir,) = re.findall(r"^WORKDIR (\S+)$", dockerfile, re.M)
    (target,) = re.findall(r"^COPY --from=datasets \S+ cisi (\S+)$", dockerfile, re.M)
    for config in ("configs/benchmarks/cisi.yaml", "configs/sweeps/cisi-fusion.yaml"):
        dataset = yaml.safe_load((ROOT / config).read_text())["dataset"]
        in_image = os.path.normpath(Path(workdir) / Path(config).parent / dataset)
        assert in_image == target, (config, in_image)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^image:\n\tdocker build --build-context datasets=", makefile, re.M)
    assert (ROOT.parent / "shared" / "data" / "cisi").exists() or pytest.skip("no local CISI to check")


def test_a_value_settings_refuse_is_reported_naming_the_variable(production):
    objects = copy.deepcopy(production)
    one(objects, "Secret", "stratmaster-secrets")["stringData"]["DATABASE_URL"] = "mysql://db/stratmaster"
    with pytest.raises(ManifestError, match=r"stratmaster-config/stratmaster-secrets: invalid configuration: "
                                            r"DATABASE_URL: must be a PostgreSQL URL"):
        kuberay.check_environment(objects, "overlays/production")


def test_example_placeholders_are_refused_in_a_real_secrets_env():
    example = (PRODUCTION / "secrets.env.example").read_text()
    found = kuberay.placeholders(example)
    assert "DATABASE_URL still holds the example's placeholder value" in found
    assert "STRATMASTER_ENCRYPTION_KEYS still holds the example's placeholder value" in found
    assert kuberay.placeholders("DATABASE_URL=postgresql://u:s3cret@db:5432/x\n") == []
