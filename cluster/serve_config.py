"""Loads `configs/serve.yaml`, applies local overrides and validates it before deploying.

Serve validates a config only when the controller builds it; we validate up front, with
each application's builder arguments checked against the builder's pydantic type, so a
mistake is reported with the file and the application's name before any process starts.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from ray.serve.schema import ServeDeploySchema

from stratmaster.settings import ConfigurationError, Settings


def _builder_args_type(import_path: str) -> type[BaseModel] | None:
    module_name, _, attr = import_path.replace(":", ".").rpartition(".")
    module = __import__(module_name, fromlist=[attr])
    builder = getattr(module, attr)
    parameters = list(inspect.signature(builder, eval_str=True).parameters.values())
    annotation = parameters[0].annotation if parameters else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def load_serve_config(path: Path, settings: Settings) -> ServeDeploySchema:
    """The validated Serve config with http host/port taken from settings."""
    try:
        raw: dict[str, Any] = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{path}: cannot read Serve config: {exc}") from None
    raw.setdefault("http_options", {}).update(host=settings.http_host, port=settings.http_port)
    try:
        config = ServeDeploySchema.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(f"{path}: invalid Serve config: {exc}") from None
    for app in config.applications:
        args_type = _builder_args_type(app.import_path)
        if args_type is None:
            continue
        try:
            args_type.model_validate(app.args or {})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigurationError(f"{path}: application {app.name!r} args: {problems}") from None
    return config
