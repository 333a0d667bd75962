"""`make deps.check`: every pinned dependency is installed at exactly its pinned version."""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement


def main() -> int:
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {}).values()
    pins = list(project["dependencies"]) + [pin for group in extras for pin in group]
    problems = []
    for line in pins:
        requirement = Requirement(line)
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            problems.append(f"{requirement.name}: not installed (wants {requirement.specifier})")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            problems.append(f"{requirement.name}: installed {installed}, pinned {requirement.specifier}")
    for problem in problems:
        print(f"deps.check: {problem}", file=sys.stderr)
    print(f"deps.check: {len(pins) - len(problems)}/{len(pins)} pins satisfied")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
