"""The router's catalogue and policy: which models exist, who may use which, and what it costs.

`configs/router/models.yaml` holds providers (each with its models and prices), per-tenant,
per-task policies (primary, ordered fallbacks, constraints), budgets and routing knobs.
`load_catalogue` validates all of it at load and raises `CatalogueError` whose message
names the file, the path inside it (`policies.acme.plan.fallbacks[1]`) and the problem,
for shape errors (pydantic) and cross-references (a policy naming an unknown model) alike.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT = "default"
LOCAL_MODEL = "local-extractive"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
_ENV = re.compile(r"[A-Z_][A-Z0-9_]*")


class CatalogueError(ValueError):
    """The catalogue file cannot be used; the message names file, path and problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(_Strict):
    """One model a provider serves, as the router names and prices it."""

    name: str = Field(description="The catalogue's name for it, used in policies and the ledger")
    provider_model: str | None = Field(None, description="The name the provider's API expects; default: name")
    input_per_1k: float = Field(0.0, ge=0, description="USD per 1,000 prompt tokens")
    output_per_1k: float = Field(0.0, ge=0, description="USD per 1,000 completion tokens")
    context_window: int = Field(8192, ge=256, le=10_000_000, description="Prompt plus completion tokens it accepts")

    @field_validator("name")
    @classmethod
    def _tame_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"must be 1-128 letters, digits or ._:/- starting with a letter or digit, got {value!r}")
        return value

    @property
    def api_name(self) -> str:
        return self.provider_model or self.name

    def cost_usd(self, tokens_in: int, tokens_out: int) -> float:
        return tokens_in / 1000 * self.input_per_1k + tokens_out / 1000 * self.output_per_1k


class ProviderEntry(_Strict):
    kind: Literal["openai-compatible", "local"]
    enabled: bool = True
    base_url: str | None = Field(None, description="openai-compatible: the URL before /chat/completions, e.g. "
                                                   "http://127.0.0.1:8000/v1")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key; none: no key sent")
    timeout_s: float = Field(30.0, gt=0, le=600, description="Per attempt: connect, read and write")
    max_retries: int = Field(2, ge=0, le=10, description="Retries on 429, 5xx and connection errors")
    backoff_s: float = Field(0.25, ge=0, le=30, description="First retry waits this long, doubling each time")
    max_backoff_s: float = Field(4.0, ge=0, le=120, description="Longest wait between retries, Retry-After included")
    data_leaves_cluster: bool | None = Field(None, description="Whether prompts sent here leave the cluster; "
                                                              "default: true for openai-compatible, false for local")
    models: list[ModelEntry] = Field(min_length=1)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"https?://[^/\s]+", value):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV.fullmatch(value):
            raise ValueError(f"must name an environment variable (A-Z, 0-9, _), got {value!r}")
        return value

    @property
    def external(self) -> bool:
        if self.data_leaves_cluster is not None:
            return self.data_leaves_cluster
        return self.kind != "local"


class Constraints(_Strict):
    max_input_per_1k: float | None = Field(None, ge=0, description="Skip models whose prompt price is higher")
    max_output_per_1k: float | None = Field(None, ge=0, description="Skip models whose completion price is higher")
    min_context_window: int | None = Field(None, ge=1, description="Skip models with a smaller context window")
    allow_external: bool = Field(True, description="False: only models whose data stays in the cluster")
    max_temperature: float | None = Field(None, ge=0, le=2, description="Requests above it are capped to it")


class TaskPolicy(_Strict):
    primary: str
    fallbacks: list[str] = Field(default_factory=list)
    constraints: Constraints = Field(default_factory=Constraints)

    @property
    def candidates(self) -> list[str]:
        return [self.primary, *self.fallbacks]


class Budget(_Strict):
    limit_usd: float | None = Field(None, ge=0, description="Spend allowed per period; none: unlimited")
    period: Literal["day", "month", "total"] = "month"


class Budgets(_Strict):
    default: Budget = Field(default_factory=Budget)
    tenants: dict[str, Budget] = Field(default_factory=dict)

    def for_tenant(self, tenant: str) -> Budget:
        return self.tenants.get(tenant, self.default)


class RewardWeights(_Strict):
    """How the recommender scores a call in [0, 1]: a weighted mean of the parts it has."""

    quality: float = Field(0.7, ge=0)
    latency: float = Field(0.15, ge=0)
    cost: float = Field(0.15, ge=0)
    latency_ref_ms: float = Field(5000.0, gt=0, description="A call this slow (or slower) scores 0 on latency")
    cost_ref_usd: float = Field(0.01, gt=0, description="A call this dear (or dearer) scores 0 on cost")


class Routing(_Strict):
    cooldown_s: float = Field(30.0, ge=0, le=3600, description="How long a failing model is skipped")
    deadline_s: float = Field(25.0, gt=0, le=600, description="A request's whole time, fallbacks included; keep it "
                                                            "under the HTTP proxy's request timeout")
    default_max_tokens: int = Field(256, ge=1, le=32768, description="Completion tokens when a request gives none")
    reward: RewardWeights = Field(default_factory=RewardWeights)


class Catalogue(_Strict):
    providers: dict[str, ProviderEntry] = Field(min_length=1)
    policies: dict[str, dict[str, TaskPolicy]]
    budgets: Budgets = Field(default_factory=Budgets)
    routing: Routing = Field(default_factory=Routing)

    def model_names(self) -> list[str]:
        return [m.name for p in self.providers.values() for m in p.models]

    def model(self, name: str) -> tuple[str, ProviderEntry, ModelEntry]:
        for provider_name, provider in self.providers.items():
            for entry in provider.models:
                if entry.name == name:
                    return provider_name, provider, entry
        raise KeyError(name)

    def policy(self, tenant: str, task: str) -> tuple[str, TaskPolicy]:
        """The policy for (tenant, task) and where it came from.

        Looked up as (tenant, task), (tenant, default), (default, task), (default, default):
        a tenant's own rules, even its catch-all, win over the platform's.
        """
        for who, what in ((tenant, task), (tenant, DEFAULT), (DEFAULT, task), (DEFAULT, DEFAULT)):
            found = self.policies.get(who, {}).get(what)
            if found is not None:
                return f"policies.{who}.{what}", found
        raise KeyError((tenant, task))  # unreachable: load_catalogue requires default.default

    def problems(self) -> list[tuple[str, str]]:
        """(path, problem) for every cross-reference the shape alone cannot check."""
        found: list[tuple[str, str]] = []
        seen: dict[str, str] = {}
        for provider_name, provider in self.providers.items():
            where = f"providers.{provider_name}"
            if provider.kind == "openai-compatible" and not provider.base_url:
                found.append((f"{where}.base_url", "required for kind openai-compatible"))
            if provider.kind == "local" and provider.base_url:
                found.append((f"{where}.base_url", "the local provider calls nothing; remove it"))
            if provider.max_backoff_s < provider.backoff_s:
                found.append((f"{where}.max_backoff_s", "must be at least backoff_s"))
            for index, entry in enumerate(provider.models):
                if entry.name in seen:
                    found.append((f"{where}.models[{index}].name",
                                  f"{entry.name!r} is already a model of {seen[entry.name]}"))
                seen[entry.name] = f"providers.{provider_name}"
                if provider.kind == "local" and entry.name != LOCAL_MODEL:
                    found.append((f"{where}.models[{index}].name",
                                  f"the local provider has one model, {LOCAL_MODEL!r}"))
        if DEFAULT not in self.policies or DEFAULT not in self.policies[DEFAULT]:
            found.append(("policies.default.default", "required: the policy for any tenant and task not listed"))
        known = sorted(seen)
        for tenant, tasks in self.policies.items():
            for task, policy in tasks.items():
                where = f"policies.{tenant}.{task}"
                names = [("primary", policy.primary)] + [(f"fallbacks[{i}]", n) for i, n in enumerate(policy.fallbacks)]
                listed: set[str] = set()
                for path, name in names:
                    if name not in seen:
                        found.append((f"{where}.{path}", f"unknown model {name!r}; the catalogue has {known}"))
                    elif name in listed:
                        found.append((f"{where}.{path}", f"{name!r} is listed twice"))
                    listed.add(name)
        return found


def _where(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def parse_catalogue(raw: Any, source: str) -> Catalogue:
    """A catalogue from already-parsed YAML; `source` names it in errors."""
    if not isinstance(raw, dict):
        raise CatalogueError(f"{source}: (top level): must be a mapping with providers and policies")
    try:
        catalogue = Catalogue.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {_where(tuple(e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                 for e in exc.errors()]
        raise CatalogueError("\n".join(lines)) from None
    problems = catalogue.problems()
    if problems:
        raise CatalogueError("\n".join(f"{source}: {path}: {problem}" for path, problem in problems))
    return catalogue


def load_catalogue(path: Path) -> Catalogue:
    """The catalogue in a YAML file, validated; CatalogueError naming file, path and problem."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{path}: not valid YAML: {exc}") from None
    return parse_catalogue(raw, str(path))
