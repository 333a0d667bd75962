"""Quality gates: floors and ceilings on the numbers of a result JSON, as pass/fail per gate.

A thresholds file (configs/evals/thresholds.yaml) holds one gate set per kind of result,
so benchmarks, sweeps and RAG evals share one file:

    retrieval_benchmark:                 a set, named like the result's "kind"
      keyword nDCG@10:                   a gate, named for the table
        path: quality.keyword.nDCG@10    where the number is in the result
        min: 0.38                        floor, inclusive (and/or max: ceiling, inclusive)
        required: false                  optional; default true

A path is the keys from the top of the result joined by dots; at each level the longest
key that matches is taken, so keys may themselves hold dots or spaces
("quality.hybrid convex kw=0.3.nDCG@10"), and a number indexes a list. A value that is
absent or null was not measured: the gate fails (a result that cannot show it meets a
floor does not meet it) unless it says `required: false`, when it is skipped. Booleans,
strings and NaN fail as not being numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

DEFAULT_THRESHOLDS = Path(__file__).resolve().parents[2] / "configs" / "evals" / "thresholds.yaml"
GATE_FIELDS = frozenset({"path", "min", "max", "required"})


class ThresholdsError(ValueError):
    """A malformed thresholds file; names the file and the place in it ("set > gate > field")."""

    def __init__(self, source: str, location: Sequence[str], message: str) -> None:
        where = f"{source}: {' > '.join(location)}" if location else source
        super().__init__(f"{where}: {message}")
        self.source, self.location = source, tuple(location)


class GateSetError(ValueError):
    """No gate set can be chosen for a result."""


@dataclass(frozen=True, slots=True)
class Gate:
    name: str
    path: str
    min: float | None = None
    max: float | None = None
    required: bool = True

    @property
    def bounds(self) -> str:
        parts = ([f">= {self.min:g}"] if self.min is not None else []) + \
                ([f"<= {self.max:g}"] if self.max is not None else [])
        return " and ".join(parts)


@dataclass(frozen=True, slots=True)
class GateResult:
    gate: Gate
    status: Literal["pass", "fail", "skip"]
    value: Any  # what the path held (None when absent)
    detail: str = ""  # why it did not pass

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def as_dict(self) -> dict[str, Any]:
        return {"gate": self.gate.name, "path": self.gate.path, "min": self.gate.min, "max": self.gate.max,
                "value": self.value, "status": self.status, "detail": self.detail}


# --- thresholds files -------------------------------------------------------------------------
def _number(source: str, location: list[str], value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ThresholdsError(source, location, f"must be a finite number, got {value!r}")
    return value


def _gate(source: str, set_name: str, name: Any, spec: Any) -> Gate:
    location = [set_name, str(name)]
    if not isinstance(name, str) or not name.strip():
        raise ThresholdsError(source, location, "a gate name must be a non-empty string")
    if not isinstance(spec, Mapping):
        raise ThresholdsError(source, location, f"must be a mapping with path and min and/or max, got {spec!r}")
    unknown = sorted(str(k) for k in spec if k not in GATE_FIELDS)
    if unknown:
        raise ThresholdsError(source, [*location, unknown[0]],
                              f"unknown field (known: {', '.join(sorted(GATE_FIELDS))})")
    path = spec.get("path")
    if not isinstance(path, str) or not path.strip():
        raise ThresholdsError(source, [*location, "path"], f"must be a non-empty string, got {path!r}")
    floor = _number(source, [*location, "min"], spec["min"]) if "min" in spec else None
    ceiling = _number(source, [*location, "max"], spec["max"]) if "max" in spec else None
    if floor is None and ceiling is None:
        raise ThresholdsError(source, location, "needs min, max or both")
    if floor is not None and ceiling is not None and floor > ceiling:
        raise ThresholdsError(source, location, f"min {floor} is above max {ceiling}: no value can pass")
    required = spec.get("required", True)
    if not isinstance(required, bool):
        raise ThresholdsError(source, [*location, "required"], f"must be true or false, got {required!r}")
    return Gate(name, path.strip(), floor, ceiling, required)


def parse_thresholds(data: Any, source: str = "<thresholds>") -> dict[str, tuple[Gate, ...]]:
    """Gate sets from a decoded thresholds document, validated; every error names its place."""
    if not isinstance(data, Mapping) or not data:
        raise ThresholdsError(source, [], "expected a mapping of gate set names to gates")
    sets: dict[str, tuple[Gate, ...]] = {}
    for set_name, gates in data.items():
        if not isinstance(set_name, str) or not set_name.strip():
            raise ThresholdsError(source, [str(set_name)], "a gate set name must be a non-empty string")
        if not isinstance(gates, Mapping) or not gates:
            raise ThresholdsError(source, [set_name], "must be a non-empty mapping of gate names to gates")
        sets[set_name] = tuple(_gate(source, set_name, name, spec) for name, spec in gates.items())
    return sets


def load_thresholds(path: Path | str = DEFAULT_THRESHOLDS) -> dict[str, tuple[Gate, ...]]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ThresholdsError(str(path), [], f"{where}not valid YAML ({getattr(exc, 'problem', None) or exc})") \
            from None
    return parse_thresholds(data, str(path))


# --- results ----------------------------------------------------------------------------------
class PathNotFound(LookupError):
    pass


def resolve(result: Any, path: str) -> Any:
    """The value at a dotted path (longest matching key first at each level); PathNotFound if absent."""
    node, rest, consumed = result, path, []
    while True:
        if isinstance(node, Mapping):
            matches = [k for k in node if isinstance(k, str) and (rest == k or rest.startswith(k + "."))]
            if not matches:
                keys = ", ".join(sorted(map(str, node))[:20])
                raise PathNotFound(f"no key at {'.'.join(consumed) or 'the top'} matches {rest!r} (keys: {keys})")
            key = max(matches, key=len)
        elif isinstance(node, list):
            key = rest.split(".", 1)[0]
            if not key.isdigit() or int(key) >= len(node):
                raise PathNotFound(f"{'.'.join(consumed)} is a list of {len(node)}; {key!r} is not an index in it")
        else:
            raise PathNotFound(f"{'.'.join(consumed)} is a {type(node).__name__}, not an object or a list")
        node = node[int(key)] if isinstance(node, list) else node[key]
        consumed.append(key)
        if rest == key:
            return node
        rest = rest[len(key) + 1:]


def evaluate_gate(gate: Gate, result: Any) -> GateResult:
    try:
        value = resolve(result, gate.path)
    except PathNotFound as exc:
        return GateResult(gate, "fail" if gate.required else "skip", None, f"not measured: {exc}")
    if value is None:
        return GateResult(gate, "fail" if gate.required else "skip", None, "not measured: null")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return GateResult(gate, "fail", value, f"not a number: {value!r}")
    if math.isnan(value):
        return GateResult(gate, "fail", value, "not a number: NaN")
    if gate.min is not None and value < gate.min:
        return GateResult(gate, "fail", value, f"below the floor {gate.min:g}")
    if gate.max is not None and value > gate.max:
        return GateResult(gate, "fail", value, f"above the ceiling {gate.max:g}")
    return GateResult(gate, "pass", value)


def evaluate_gates(gates: Sequence[Gate], result: Any) -> list[GateResult]:
    return [evaluate_gate(gate, result) for gate in gates]


def select_gate_set(sets: Mapping[str, tuple[Gate, ...]], result: Any,
                    name: str | None = None) -> tuple[str, tuple[Gate, ...]]:
    """The set called `name`, else the one named by the result's "kind" field."""
    known = ", ".join(sets)
    if name is None:
        kind = result.get("kind") if isinstance(result, Mapping) else None
        if not isinstance(kind, str):
            raise GateSetError(f"the result has no \"kind\" field naming its gate set; choose one with --set "
                               f"(sets: {known})")
        name = kind
    if name not in sets:
        raise GateSetError(f"no gate set {name!r} (sets: {known})")
    return name, sets[name]


def gate_table(result: Any, thresholds: Path | str = DEFAULT_THRESHOLDS) -> list[dict[str, Any]]:
    """A result's gates from the set its kind names, as stored on an eval run; none when no set names it."""
    try:
        _, gates = select_gate_set(load_thresholds(thresholds), result)
    except GateSetError:
        return []
    return [r.as_dict() for r in evaluate_gates(gates, result)]


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}"
    return repr(value)


def format_table(results: Sequence[GateResult]) -> str:
    """One line per gate (status, name, measured value, bounds, why it did not pass), then the counts."""
    header = ("STATUS", "GATE", "VALUE", "BOUNDS")
    rows = [header] + [(r.status.upper(), r.gate.name, _shown(r.value), r.gate.bounds) for r in results]
    details = ["DETAIL"] + [r.detail for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + "  " + detail
             for row, detail in zip(rows, details, strict=True)]
    counts = {status: sum(1 for r in results if r.status == status) for status in ("pass", "fail", "skip")}
    lines.append(f"{len(results)} gates: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    return "\n".join(line.rstrip() for line in lines)
