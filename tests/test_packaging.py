"""tradeops installs as one import name, and a wheel built from the checkout works anywhere.

The repository keeps its top-level folders (runtime/, runbooks/, ...); pyproject.toml maps the
checkout root to the package ``tradeops``. These tests hold that mapping to the tree, and prove a
non-editable install outside the checkout runs the stack.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from tests.support.stack import REPO

SHIPPED = ("tradeops/deploy/template.yaml", "tradeops/runbooks/failover.yaml", "tradeops/runbooks/failback.yaml",
           "tradeops/runbooks/schema.json", "tradeops/runbooks/operators.example.yaml",
           "tradeops/loadtests/locustfile.py", "tradeops/loadtests/scenario.schema.json",
           "tradeops/loadtests/scenarios/steady.yaml", "tradeops/loadtests/scenarios/market-open.yaml",
           "tradeops/loadtests/scenarios/spike.yaml", "tradeops/loadtests/scenarios/step.yaml",
           "tradeops/experiments/load-summary.schema.json", "tradeops/reports/service.yaml",
           "tradeops/reports/service.schema.json", "tradeops/reports/testing-plan.yaml", "tradeops/reports/rules.yaml",
           "tradeops/reports/templates/report.html", "tradeops/reports/templates/report.md",
           "tradeops/reports/templates/_style.html", "tradeops/reports/templates/index.html",
           "tradeops/runtime/platform/universe.csv")


def _checkout_files() -> list[str]:
    """The files a clean clone of this working tree holds (tracked, plus new ones git does not ignore)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    return [f for f in listed if (REPO / f).is_file()]


def test_every_package_folder_is_listed_in_pyproject():
    """pyproject's package list is exactly the folders of the checkout that hold an __init__.py."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"tradeops"}
    for init in REPO.rglob("__init__.py"):
        rel = init.parent.relative_to(REPO)
        if rel.parts and rel.parts[0] in ("tests", "bench", ".venv", "build"):
            continue
        if rel.parts and any(p.startswith(".") for p in rel.parts):
            continue
        if rel.parts:
            found.add("tradeops." + ".".join(rel.parts))
    assert listed == found


def test_the_image_build_context_holds_every_top_level_package():
    """.dockerignore lets every top-level folder the wheel is built from into Containerfile's build context."""
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    top = {name.split(".")[1] for name in packages if name.count(".") >= 1}
    allowed = {line[1:].strip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    assert top - allowed == set(), f".dockerignore keeps these packages out of the image: {sorted(top - allowed)}"


@pytest.fixture(scope="session")  # its tests are in two tiers: built once
def wheel(processes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout's files (nothing else of this machine goes in)."""
    src = tmp_path_factory.mktemp("src")
    for rel in _checkout_files():
        target = src / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(src)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = out.glob("tradeops-*.whl")
    return path


def test_the_wheel_holds_one_top_level_name_and_the_shipped_files(wheel: Path):
    """Every file of the wheel is under tradeops/ or its dist-info; template, runbooks, schemas, the locustfile
    and the load scenarios ship."""
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"tradeops"}
    assert all(t == "tradeops" or (t.startswith("tradeops-") and t.endswith(".dist-info")) for t in tops)
    for shipped in SHIPPED:
        assert shipped in names, shipped
    assert not any(n.startswith("tradeops/tests/") or n.startswith("tradeops/bench/") for n in names)


# Every requirement of the installed wheel (with the [local] extra) that the environment does not satisfy.
_UNMET = """
import importlib.metadata as m, json
from packaging.requirements import Requirement
unmet = []
for text in m.requires("tradeops") or []:
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate({"extra": "local"}):
        continue
    try:
        version = m.version(req.name)
    except m.PackageNotFoundError:
        unmet.append(text)
        continue
    if version not in req.specifier:
        unmet.append(f"{text} (found {version})")
print(json.dumps(unmet))
"""


def test_a_wheel_installed_outside_the_checkout_runs_the_stack(own_drill, wheel: Path, tmp_path: Path):
    """Fresh venv, the wheel installed (not editable), then --version, up, status --json, a short load run and down
    from a temp dir.

    The wheel goes in with --no-deps and the venv sees this environment's packages (a .pth line, which does not
    bring this checkout's editable finder along): resolving and installing ~100 dependencies cost 80 s of the suite's
    25 minutes. What that skips is checked instead: every requirement of the wheel's metadata, with the [local]
    extra, is satisfied by what the venv imports."""
    env_dir = tmp_path / "venv"
    # No pip of its own (ensurepip costs seconds): this environment's pip installs into it (`--python`).
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python, tradeops = env_dir / "bin" / "python", env_dir / "bin" / "tradeops"
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                                "--disable-pip-version-check", "-q", "--no-deps", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(purelib, "zz-test-dependencies.pth").write_text(ours + "\n", encoding="utf-8")
    unmet = subprocess.run([str(python), "-c", _UNMET], capture_output=True, text=True, cwd=tmp_path)
    assert unmet.returncode == 0 and unmet.stdout.strip() == "[]", unmet.stdout + unmet.stderr
    where = subprocess.run([str(python), "-c", "import tradeops; print(tradeops.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(purelib), f"tradeops imported from {where}, not the installed wheel"
    work = tmp_path / "elsewhere"
    work.mkdir()
    # Only `tradeops` (and its dist-info, and the console script) came from this distribution.
    files = subprocess.run([str(python), "-c", "import importlib.metadata as m, json; "
                            "print(json.dumps([str(f) for f in m.files('tradeops')]))"],
                           cwd=work, capture_output=True, text=True, check=True).stdout
    tops = {Path(f).parts[0] for f in json.loads(files)}
    assert {t for t in tops if t not in ("..", "tradeops")} == {t for t in tops if t.endswith(".dist-info")}
    assert any(t.startswith("tradeops-") and t.endswith(".dist-info") for t in tops)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_", "VIRTUAL_ENV"))}
    env.update(TRADEOPS_STATE_DIR=str(tmp_path / "state"), TRADEOPS_CANARY_SECONDS="0",
               PATH=f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}")

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(tradeops), *args], cwd=work, env=env, capture_output=True, text=True,
                              timeout=timeout)

    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("tradeops "), version.stderr
    up = run("up", "--workers", "1", timeout=180)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        status = run("status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        info = json.loads(status.stdout)
        assert all(info["components"].values()) and "worker-1" in info["components"]
        assert str(work) not in json.dumps(info) and str(REPO) not in status.stdout
        # The locustfile and the scenarios ship in the wheel: a load run works without a checkout.
        load = run("load", "run", "steady", "--rate", "5", "--duration", "3s", "--drain", "10s", "--json",
                   "--quiet", timeout=180)
        assert load.returncode == 0, load.stdout[-2000:] + load.stderr
        summary = json.loads(load.stdout)
        assert summary["orders"]["placed"] > 0 and summary["orders"]["lost"] == 0
        assert str(REPO) not in json.dumps(summary["scenario"])
    finally:
        down = run("down")
    assert down.returncode == 0, down.stderr
    assert not (tmp_path / "state" / "stack.json").exists()
