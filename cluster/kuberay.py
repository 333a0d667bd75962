"""KubeRay manifests: generate the RayService's Serve config and validate every manifest offline.

`configs/serve.yaml` is the one source of truth for Serve. `kuberay/rayservice.yaml` carries
a copy of it as `spec.serveConfigV2`, between two marker comments, changed only where KubeRay
needs something else than a developer machine:

- `http_options.host: 0.0.0.0`: the proxy must accept traffic from the Kubernetes Service,
  not only from the pod's loopback.
- `proxy_location: EveryNode`: every pod that runs a replica also runs a proxy, and KubeRay's
  serve Service sends traffic to each pod whose proxy is ready (a worker's readiness probe
  checks its proxy). Ingress capacity then grows with the worker pods, and the head, which
  runs no replicas (`num-cpus: "0"`), is not the one path every request must take. With
  `HeadOnly` a single proxy on the head would carry the whole platform's traffic.

    python -m cluster.kuberay render   # rewrite the generated block of kuberay/rayservice.yaml
    python -m cluster.kuberay check    # exit 1 if it drifted, or if any manifest is invalid

`check` also validates every manifest under `kuberay/` without a cluster: KubeRay's custom
resources against the v1 `openAPIV3Schema` of their CRDs (jsonschema, unknown fields refused as
`kubectl apply --validate=strict` would), standard objects with `kubernetes-validate`, the
PodMonitor against a small schema of the fields we use (its CRD is not in the repository),
every `serveConfigV2` with Ray's `ServeDeploySchema` and the builders' argument models, and the
kustomizations, rendered by a small subset of kustomize (`build_kustomization`), so the
production overlay's values are validated too, and the ConfigMap and Secret as the pods'
environment with `Settings`. Not evaluated: the CRDs' CEL rules (`x-kubernetes-validations`)
and the checks the KubeRay operator itself makes when it reconciles.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVE_CONFIG = ROOT / "configs" / "serve.yaml"
KUBERAY_DIR = ROOT / "kuberay"
RAYSERVICE = KUBERAY_DIR / "rayservice.yaml"
CRD_DIR = ROOT.parent / "shared" / "kuberay-crds"
CONFIG_TEMPLATE = ROOT / "configs" / "production-config-template.yaml"
CONFIG_MAP, SECRET = "stratmaster-config", "stratmaster-secrets"
# The Kubernetes version the standard objects are validated against (kubernetes-validate's schemas).
KUBERNETES_VERSION = "1.33"

KUBERAY_HTTP_HOST = "0.0.0.0"
KUBERAY_PROXY_LOCATION = "EveryNode"
RENDER_COMMAND = ".venv/bin/python -m cluster.kuberay render"

BEGIN_MARKER = ("  # BEGIN serveConfigV2: generated from configs/serve.yaml by `python -m cluster.kuberay render`; "
                "do not edit")
END_MARKER = "  # END serveConfigV2"

CRD_FILES = {"RayService": "ray.io_rayservices.yaml", "RayJob": "ray.io_rayjobs.yaml",
             "RayCluster": "ray.io_rayclusters.yaml"}


class ManifestError(ValueError):
    """A manifest is invalid, or the generated part drifted; the message says where and what."""


# --- serveConfigV2 -----------------------------------------------------------------------

def kuberay_serve_config(source: Path = SERVE_CONFIG) -> dict[str, Any]:
    """configs/serve.yaml as KubeRay runs it: proxy on every node, bound to all interfaces."""
    try:
        raw = yaml.safe_load(Path(source).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"{source}: cannot read Serve config: {exc}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{source}: a Serve config is a mapping")
    config = copy.deepcopy(raw)
    config["proxy_location"] = KUBERAY_PROXY_LOCATION
    config.setdefault("http_options", {})["host"] = KUBERAY_HTTP_HOST
    return config


def serve_config_text(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, width=120, default_flow_style=False)


def validate_serve_config(text: str, where: str) -> None:
    """A serveConfigV2 string: Ray's ServeDeploySchema, then each builder's argument model."""
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    from cluster.serve_config import load_serve_config
    from stratmaster.settings import ConfigurationError, Settings

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{where}: serveConfigV2 is not YAML: {exc}") from None
    try:
        config = ServeDeploySchema.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise ManifestError(f"{where}: serveConfigV2 fails ServeDeploySchema: {problems}") from None
    unknown = _unknown_serve_fields(raw)
    if unknown:
        raise ManifestError(f"{where}: serveConfigV2 has fields Serve does not know (it would ignore them): "
                            + "; ".join(unknown))
    if config.http_options.host != KUBERAY_HTTP_HOST:
        raise ManifestError(f"{where}: serveConfigV2 http_options.host is {config.http_options.host!r}; "
                            f"on KubeRay the proxy must bind {KUBERAY_HTTP_HOST}")
    # Builder arguments, by cluster/serve_config.py's own check (host/port come from settings there).
    with tempfile.TemporaryDirectory(prefix="serve-config-") as folder:
        path = Path(folder) / "serveConfigV2.yaml"
        path.write_text(text)
        settings = Settings(STRATMASTER_HTTP_HOST=KUBERAY_HTTP_HOST, STRATMASTER_HTTP_PORT=config.http_options.port)
        try:
            load_serve_config(path, settings)
        except ConfigurationError as exc:
            raise ManifestError(f"{where}: serveConfigV2: {str(exc).removeprefix(str(path) + ': ')}") from None


def _unknown_serve_fields(raw: dict[str, Any]) -> list[str]:
    """Keys Serve's schemas would silently drop (they accept extra fields for forward compatibility)."""
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import (
        DeploymentSchema,
        HTTPOptionsSchema,
        RayActorOptionsSchema,
        ServeApplicationSchema,
        ServeDeploySchema,
    )

    def unknown(value: Any, model: Any, where: str) -> list[str]:
        if not isinstance(value, dict):
            return []
        return [f"{where}.{key}" if where else str(key) for key in value if key not in model.model_fields]

    found = unknown(raw, ServeDeploySchema, "") + unknown(raw.get("http_options"), HTTPOptionsSchema, "http_options")
    for i, app in enumerate(raw.get("applications") or []):
        found += unknown(app, ServeApplicationSchema, f"applications[{i}]")
        for j, deployment in enumerate((app or {}).get("deployments") or []):
            where = f"applications[{i}].deployments[{j}]"
            found += unknown(deployment, DeploymentSchema, where)
            found += unknown(deployment.get("ray_actor_options"), RayActorOptionsSchema, f"{where}.ray_actor_options")
            found += unknown(deployment.get("autoscaling_config"), AutoscalingConfig, f"{where}.autoscaling_config")
    return found


def render_rayservice(manifest_text: str, source: Path = SERVE_CONFIG) -> str:
    """The RayService manifest with its generated block replaced by the current Serve config."""
    lines = manifest_text.splitlines()
    try:
        begin, end = lines.index(BEGIN_MARKER), lines.index(END_MARKER)
    except ValueError:
        raise ManifestError(f"{RAYSERVICE.name}: the marker lines of the generated block are missing:\n"
                            f"{BEGIN_MARKER}\n{END_MARKER}") from None
    if end < begin:
        raise ManifestError(f"{RAYSERVICE.name}: END marker before BEGIN marker")
    body = ["  serveConfigV2: |"] + ["    " + line if line else "" for line in
                                     serve_config_text(kuberay_serve_config(source)).splitlines()]
    return "\n".join(lines[:begin + 1] + body + lines[end:]) + "\n"


def check_drift(manifest: Path = RAYSERVICE, source: Path = SERVE_CONFIG) -> None:
    expected = render_rayservice(manifest.read_text(), source)
    if expected != manifest.read_text():
        raise ManifestError(
            f"{manifest.relative_to(ROOT) if manifest.is_relative_to(ROOT) else manifest}: serveConfigV2 is out of "
            f"date with {source.name}. Regenerate it with `{RENDER_COMMAND}` and commit kuberay/rayservice.yaml "
            "together with configs/serve.yaml.")


# --- schema validation -------------------------------------------------------------------

def _strict(schema: Any) -> Any:
    """Refuse unknown fields where the schema lists its properties (as the API server's strict field validation)."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def crd_validator(kind: str, crd_dir: Path = CRD_DIR) -> Any:
    import jsonschema

    path = Path(crd_dir) / CRD_FILES[kind]
    if not path.exists():
        raise ManifestError(f"{path}: KubeRay CRD not found (pass --crds DIR)")
    crd = yaml.safe_load(path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _strict(version["schema"]["openAPIV3Schema"])
    # metadata is `type: object` in a CRD; the API server checks it. Ours checks a name is there.
    return jsonschema.Draft7Validator(schema)


# monitoring.coreos.com/v1 PodMonitor: its CRD (prometheus-operator) is not in the repository,
# so this is a schema of the fields our manifest uses, with prometheus-operator's names and
# types; unknown fields are refused.
PODMONITOR_SCHEMA: dict[str, Any] = _strict({
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {"type": "object", "required": ["name"], "x-kubernetes-preserve-unknown-fields": True},
        "spec": {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "namespaceSelector": {"type": "object", "properties": {
                    "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}},
                "selector": {"type": "object", "minProperties": 1, "properties": {
                    "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "matchExpressions": {"type": "array", "items": {"type": "object", "required": ["key", "operator"],
                                                                    "properties": {
                                                                        "key": {"type": "string"},
                                                                        "operator": {"enum": ["In", "NotIn", "Exists",
                                                                                              "DoesNotExist"]},
                                                                        "values": {"type": "array",
                                                                                   "items": {"type": "string"}}}}}}},
                "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["port"],
                    "properties": {
                        "port": {"type": "string", "minLength": 1},
                        "path": {"type": "string", "pattern": "^/"},
                        "scheme": {"enum": ["http", "https"]},
                        "interval": {"type": "string", "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?)$"},
                        "scrapeTimeout": {"type": "string", "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?)$"},
                        "honorLabels": {"type": "boolean"},
                        "relabelings": {"type": "array", "items": {"type": "object", "properties": {
                            "action": {"type": "string"},
                            "sourceLabels": {"type": "array", "items": {"type": "string"}},
                            "targetLabel": {"type": "string"},
                            "regex": {"type": "string"},
                            "replacement": {"type": "string"},
                            "separator": {"type": "string"}}}},
                    }}},
            },
        },
    },
})


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def _schema_errors(validator: Any, obj: dict[str, Any]) -> list[str]:
    errors = sorted(validator.iter_errors(obj), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [f"{_path(e.absolute_path)}: {e.message}" for e in errors]


def describe(obj: Any) -> str:
    if not isinstance(obj, dict):
        return "(not a mapping)"
    return f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_object(obj: Any, where: str = "manifest", crd_dir: Path = CRD_DIR,
                    kubernetes_version: str = KUBERNETES_VERSION) -> None:
    """Raise ManifestError listing every problem of one Kubernetes object."""
    if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
        raise ManifestError(f"{where}: not a Kubernetes object (apiVersion and kind are required)")
    name = (obj.get("metadata") or {}).get("name")
    label = f"{where}: {describe(obj)}"
    problems: list[str] = []
    if not isinstance(name, str) or not _DNS_LABEL.match(name) or len(name) > 63:
        problems.append(f"metadata.name: {name!r} is not a DNS-1123 label")
    kind = obj["kind"]
    if kind in CRD_FILES:
        if obj["apiVersion"] != "ray.io/v1":
            problems.append(f"apiVersion: {obj['apiVersion']!r}; these manifests use ray.io/v1")
        else:
            problems += _schema_errors(crd_validator(kind, Path(crd_dir)), obj)
    elif kind == "PodMonitor":
        import jsonschema

        problems += _schema_errors(jsonschema.Draft7Validator(PODMONITOR_SCHEMA), obj)
    else:
        import kubernetes_validate

        try:
            kubernetes_validate.validate(obj, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{_path(exc.path)}: {exc.message} (Kubernetes {kubernetes_version} schema)")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"no schema for {obj['apiVersion']} {kind} in Kubernetes {kubernetes_version}")
    if problems:
        raise ManifestError(f"{label}: " + "; ".join(problems))
    for path, text in serve_configs(obj):
        validate_serve_config(text, f"{label}: {path}")


def serve_configs(obj: dict[str, Any]) -> Iterator[tuple[str, str]]:
    if obj.get("kind") == "RayService" and isinstance(obj.get("spec", {}).get("serveConfigV2"), str):
        yield "spec.serveConfigV2", obj["spec"]["serveConfigV2"]


# --- kustomize (the subset these manifests use) --------------------------------------------

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "namespace", "images", "patches", "labels",
                      "configMapGenerator", "secretGenerator", "generatorOptions"}


def _load_documents(path: Path) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not YAML: {exc}") from None
    return docs


def _kustomization_file(folder: Path) -> Path:
    path = folder / "kustomization.yaml"
    if not path.exists():
        raise ManifestError(f"{folder}: no kustomization.yaml")
    return path


@dataclass
class Built:
    objects: list[dict[str, Any]]
    files: set[Path]  # every file the build read: resources, env files


def _json_pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ManifestError(f"JSON patch path {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _apply_json_patch(obj: dict[str, Any], ops: list[dict[str, Any]], where: str) -> None:
    for op in ops:
        parts = _json_pointer(op["path"])
        parent: Any = obj
        for part in parts[:-1]:
            try:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            except (KeyError, IndexError, ValueError):
                raise ManifestError(f"{where}: patch path {op['path']} does not exist in {describe(obj)}") from None
        last = parts[-1]
        kind = op.get("op")
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif kind in ("replace", "remove") and index < len(parent):
                if kind == "replace":
                    parent[index] = copy.deepcopy(op["value"])
                else:
                    del parent[index]
            else:
                raise ManifestError(f"{where}: cannot {kind} {op['path']} in {describe(obj)}")
        else:
            if kind == "add":
                parent[last] = copy.deepcopy(op["value"])
            elif kind in ("replace", "remove") and last in parent:
                if kind == "replace":
                    parent[last] = copy.deepcopy(op["value"])
                else:
                    del parent[last]
            else:
                raise ManifestError(f"{where}: cannot {kind} {op['path']}: not in {describe(obj)}")


def _merge(base: dict[str, Any], patch: dict[str, Any], where: str) -> None:
    for key, value in patch.items():
        if isinstance(value, list):
            # Strategic merge merges some lists by key (containers by name); we do not emulate that.
            raise ManifestError(f"{where}: strategic-merge patches with lists are not supported here; "
                                "use a JSON 6902 patch")
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, where)
        else:
            base[key] = copy.deepcopy(value)


def _read_env_file(path: Path, env_fallback_suffix: str | None, files: set[Path]) -> dict[str, str]:
    if not path.exists() and env_fallback_suffix and Path(str(path) + env_fallback_suffix).exists():
        path = Path(str(path) + env_fallback_suffix)
    if not path.exists():
        raise ManifestError(f"{path}: env file not found")
    files.add(path)
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ManifestError(f"{path}:{number}: expected KEY=VALUE")
        values[key.strip()] = value
    return values


def _generated(kind: str, spec: dict[str, Any], folder: Path, options: dict[str, Any],
               env_fallback_suffix: str | None, files: set[Path]) -> dict[str, Any]:
    data: dict[str, str] = {}
    for env in spec.get("envs", []):
        data.update(_read_env_file(folder / env, env_fallback_suffix, files))
    for literal in spec.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    merged_options = {**options, **spec.get("options", {})}
    if not merged_options.get("disableNameSuffixHash"):
        raise ManifestError(f"{folder}: {kind} generator {spec['name']!r} needs disableNameSuffixHash: true "
                            "(kustomize does not rewrite names inside RayService/RayCluster pod templates)")
    metadata: dict[str, Any] = {"name": spec["name"]}
    if merged_options.get("labels"):
        metadata["labels"] = dict(merged_options["labels"])
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": metadata, "data": data}
    if kind == "Secret":
        obj["type"] = "Opaque"
        obj["stringData"] = obj.pop("data")  # kustomize base64-encodes into data; the same values
    return obj


def _containers(obj: Any) -> Iterator[dict[str, Any]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from _containers(item)


def _split_image(image: str) -> tuple[str, str | None]:
    """`registry:5000/name:tag` -> (`registry:5000/name`, `tag`); no tag -> None."""
    if ":" not in image.rsplit("/", 1)[-1]:
        return image, None
    name, _, tag = image.rpartition(":")
    return name, tag


def build_kustomization(folder: Path, env_fallback_suffix: str | None = None) -> Built:
    """Render a kustomization as `kubectl kustomize` would, for the features these manifests use.

    Unknown keys are refused rather than ignored, so a kustomization cannot use something this
    check does not understand. `env_fallback_suffix` reads `secrets.env.example` where
    `secrets.env` (kept out of git) is absent.
    """
    folder = Path(folder)
    path = _kustomization_file(folder)
    (spec,) = _load_documents(path) or [{}]
    unknown = set(spec) - KUSTOMIZATION_KEYS
    if unknown:
        raise ManifestError(f"{path}: keys this check does not support: {sorted(unknown)}")
    files = {path}
    objects: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        target = (folder / resource).resolve()
        if target.is_dir():
            built = build_kustomization(target, env_fallback_suffix)
            objects += built.objects
            files |= built.files
        elif target.is_file():
            objects += _load_documents(target)
            files.add(target)
        else:
            raise ManifestError(f"{path}: resource {resource!r} does not exist")
    options = spec.get("generatorOptions", {})
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for generator in spec.get(key, []):
            made = _generated(kind, generator, folder, options, env_fallback_suffix, files)
            behavior = generator.get("behavior", "create")
            existing = [o for o in objects if o.get("kind") == kind and o["metadata"]["name"] == generator["name"]]
            if behavior == "create":
                if existing:
                    raise ManifestError(f"{path}: {kind} {generator['name']!r} exists; use behavior merge or replace")
                objects.append(made)
            elif not existing:
                raise ManifestError(f"{path}: {kind} {generator['name']!r} to {behavior} is not in the resources")
            elif behavior == "replace":
                objects[objects.index(existing[0])] = made
            elif behavior == "merge":
                field = "stringData" if kind == "Secret" else "data"
                existing[0].setdefault(field, {}).update(made[field])
                if made["metadata"].get("labels"):
                    existing[0]["metadata"].setdefault("labels", {}).update(made["metadata"]["labels"])
            else:
                raise ManifestError(f"{path}: unknown generator behavior {behavior!r}")
    for number, patch in enumerate(spec.get("patches", [])):
        where = f"{path}: patches[{number}]"
        target = patch.get("target") or {}
        body = patch.get("patch")
        if body is None and patch.get("path"):
            body_path = folder / patch["path"]
            if not body_path.exists():
                raise ManifestError(f"{where}: patch file {patch['path']!r} does not exist")
            files.add(body_path)
            body = body_path.read_text()
        parsed = yaml.safe_load(body or "")
        if isinstance(parsed, dict):  # strategic merge: the patch names its own target
            target = {"kind": parsed.get("kind"), "name": (parsed.get("metadata") or {}).get("name"), **target}
        matches = [o for o in objects if o.get("kind") == target.get("kind")
                   and (target.get("name") is None or o["metadata"]["name"] == target.get("name"))]
        if not matches:
            raise ManifestError(f"{where}: no {target.get('kind')}/{target.get('name')} to patch")
        for obj in matches:
            if isinstance(parsed, list):
                _apply_json_patch(obj, parsed, where)
            elif isinstance(parsed, dict):
                _merge(obj, {k: v for k, v in parsed.items() if k not in ("apiVersion", "kind")}, where)
            else:
                raise ManifestError(f"{where}: a patch is a JSON 6902 list or a strategic-merge mapping")
    for image in spec.get("images", []):
        for container in _containers(objects):
            name, tag = _split_image(container.get("image", ""))
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
    if spec.get("labels"):
        for entry in spec["labels"]:
            for obj in objects:
                obj["metadata"].setdefault("labels", {}).update(entry.get("pairs", {}))
    if spec.get("namespace"):
        for obj in objects:
            obj["metadata"]["namespace"] = spec["namespace"]
    return Built(objects, files)


def kustomization_folders(root: Path = KUBERAY_DIR) -> list[Path]:
    return sorted(p.parent for p in Path(root).rglob("kustomization.yaml"))


def manifest_files(root: Path = KUBERAY_DIR) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*.yaml") if p.name != "kustomization.yaml")


# --- the whole check -----------------------------------------------------------------------

_ZERO_KEY = "A" * 43 + "="  # base64 of 32 zero bytes: the example's encryption key


def placeholders(env_text: str) -> list[str]:
    """Example values left in a real env file."""
    found = []
    for line in env_text.splitlines():
        key, _, value = line.partition("=")
        if "CHANGE_ME" in value or _ZERO_KEY in value:
            found.append(f"{key.strip()} still holds the example's placeholder value")
    return found


def check_environment(objects: list[dict[str, Any]], where: str) -> None:
    """The platform's ConfigMap and Secret, as the pods' environment, accepted by `Settings`."""
    from stratmaster.settings import ConfigurationError, load_settings

    values: dict[str, str] = {}
    for obj in objects:
        name = obj.get("metadata", {}).get("name")
        if (obj.get("kind"), name) in (("ConfigMap", CONFIG_MAP), ("Secret", SECRET)):
            values.update(obj.get("data") or {})
            values.update(obj.get("stringData") or {})
    if not values:
        return
    template = yaml.safe_load(CONFIG_TEMPLATE.read_text())["variables"]
    known = {v["name"] for group in template.values() for v in group}
    try:
        load_settings(**{k: v for k, v in values.items() if k in known})
    except ConfigurationError as exc:
        raise ManifestError(f"{where}: {CONFIG_MAP}/{SECRET}: {exc}") from None


def check_all(root: Path = KUBERAY_DIR, crd_dir: Path = CRD_DIR) -> list[str]:
    """Every problem of the manifests under `root`, as readable lines; empty when all is well."""
    problems: list[str] = []
    try:
        check_drift(root / RAYSERVICE.name)
    except ManifestError as exc:
        problems.append(str(exc))
    referenced: set[Path] = set()
    for folder in kustomization_folders(root):
        try:
            built = build_kustomization(folder, env_fallback_suffix=".example")
        except ManifestError as exc:
            problems.append(str(exc))
            continue
        referenced |= built.files
        where = f"{folder.relative_to(root.parent)} (rendered)"
        try:
            check_environment(built.objects, where)
        except ManifestError as exc:
            problems.append(str(exc))
        real_env_files = [f for f in built.files if f.name.endswith(".env")]
        if real_env_files:
            problems += [f"{f}: {problem}" for f in real_env_files for problem in placeholders(f.read_text())]
        for obj in built.objects:
            try:
                validate_object(obj, f"{folder.relative_to(root.parent)} (rendered)", crd_dir)
            except ManifestError as exc:
                problems.append(str(exc))
    for path in manifest_files(root):
        if path.resolve() not in {f.resolve() for f in referenced}:
            problems.append(f"{path.relative_to(root.parent)}: not referenced by any kustomization.yaml")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.kuberay", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("render", "check"))
    parser.add_argument("--crds", type=Path, default=CRD_DIR, help="KubeRay CRD folder (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "render":
        try:
            text = render_rayservice(RAYSERVICE.read_text())
            validate_serve_config(yaml.safe_load(text)["spec"]["serveConfigV2"], str(RAYSERVICE.relative_to(ROOT)))
        except ManifestError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        changed = text != RAYSERVICE.read_text()
        RAYSERVICE.write_text(text)
        print(f"{RAYSERVICE.relative_to(ROOT)}: serveConfigV2 {'rewritten' if changed else 'already up to date'} "
              f"from {SERVE_CONFIG.relative_to(ROOT)}")
        return 0
    problems = check_all(KUBERAY_DIR, args.crds)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"ok: {len(manifest_files())} manifests in kuberay/ valid; serveConfigV2 matches configs/serve.yaml")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
