"""The container image (issue 22, item 3): Containerfile builds on a clean machine, its runtime stage holds no
compiler or build tool and runs as a user, and a worker and the intake run from it fill an order on the local stack.

Its own tier (`image`, set by the `container_image` fixture; `python -m pytest -m image`, and CI's last tier step):
the build alone takes about half a minute. Without podman it fails in CI (CI=true) and skips elsewhere.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.image import (
    base_image,
    build,
    inspect_image,
    podman,
    podman_or_fail,
    remove_container,
    remove_image,
    run_detached,
    wait_healthy,
)
from tests.support.orderflow import Flow
from tests.support.stack import stack_environment
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import Settings, load_settings
from tradeops.runtime.platform.statefile import resolve_settings
from tradeops.runtime.stack import supervisor

BUILD_TOOLS = ("gcc", "cc", "c++", "make", "ld", "pip", "pip3", "wheel", "easy_install")
BUILD_MODULES = ("pip", "setuptools", "wheel", "flit_core", "hatchling", "poetry", "pdm", "mesonpy", "Cython")


@pytest.fixture(scope="module")
def container_image() -> Iterator[str]:
    """The image built from this checkout's Containerfile (removed at the end)."""
    podman_or_fail()
    tag = f"localhost/tradeops-test:{secrets.token_hex(4)}"
    try:
        build(tag, base=base_image())
        yield tag
    finally:
        remove_image(tag)


def test_the_runtime_stage_holds_no_compiler_or_build_tool_and_runs_as_a_user(container_image):
    """No compiler, make, linker, pip or build backend in the image (for its Python or the base's); it runs as a
    non-root user; the CLI works from the bare wheel (the reports' extra left out); the health check is built in."""
    probe = (f"for tool in {' '.join(BUILD_TOOLS)}; do command -v $tool; done; id -u; tradeops --version; "
             "python -c 'import sys; print(sys.base_prefix)'")
    found = podman("run", "--rm", *("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"), container_image,
                   "sh", "-c", probe).stdout.split()
    assert found[:1] != ["0"] and found[0].isdigit(), f"build tools on the PATH: {found}"
    uid, version, base_prefix = found[0], " ".join(found[1:3]), found[3]
    assert int(uid) != 0 and version == "tradeops 0.1.0"
    spec = f"import importlib.util as u; print([m for m in {BUILD_MODULES!r} if u.find_spec(m)])"
    for python in ("python", f"{base_prefix}/bin/python3"):
        importable = podman("run", "--rm", *("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"),
                            container_image, python, "-c", spec).stdout.strip()
        assert importable == "[]", f"{python} imports {importable}"
    config = inspect_image(container_image)
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "-m", "tradeops.runtime.stack.health"]
    assert config["Config"]["Cmd"] == ["python", "-m", "tradeops.runtime.orderpath.worker"]
    assert config["Config"]["User"] not in ("", "0", "root")


@pytest.fixture(scope="module")
def workerless_stack(container_image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A local stack (emulator, both brokers, the feed) with no worker of its own: the image's worker fills."""
    state_dir = tmp_path_factory.mktemp("image-stack")
    settings = load_settings(state_dir=state_dir)
    with pytest.MonkeyPatch.context() as env:
        for name in [k for k in os.environ if k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))]:
            env.delenv(name)
        for name, value in stack_environment(state_dir).items():
            env.setenv(name, value)
        supervisor.launch(settings, workers=0, local=True, ports={})
    try:
        yield resolve_settings(settings)
    finally:
        supervisor.stop(settings)


def test_a_worker_and_the_intake_from_the_image_fill_an_order(container_image, workerless_stack):
    """The image's intake takes an order and the image's worker (its default id unique to the container) fills it
    at the stack's primary broker; both containers' health checks pass."""
    settings = workerless_stack
    env = {"TRADEOPS_AWS_ENDPOINT_URL": str(settings.aws_endpoint_url), "TRADEOPS_REGION": settings.region,
           "TRADEOPS_ALLOW_UNPRICED_SYMBOLS": "true"}
    brokers = {f"TRADEOPS_{p.upper()}_{k.upper()}": str(getattr(settings, f"{p}_{k}"))
               for p in ("primary", "secondary") for k in ("url", "wire")}
    intake_port = supervisor.free_port()
    suffix = secrets.token_hex(3)
    intake, worker = f"tradeops-test-intake-{suffix}", f"tradeops-test-worker-{suffix}"
    try:
        run_detached(container_image, intake, "python", "-m", "tradeops.runtime.orderpath.intake",
                     "--host", "127.0.0.1", "--port", str(intake_port),
                     env={**env, "TRADEOPS_INTAKE_TOKEN": str(settings.intake_token)})
        run_detached(container_image, worker, env={**env, **brokers})  # the image's default command: a worker
        wait_healthy(intake, timeout=60)
        wait_healthy(worker, timeout=60)
        flow = Flow({"intake": f"http://127.0.0.1:{intake_port}", "state_dir": str(settings.state_dir),
                     "aws_endpoint": settings.aws_endpoint_url, "region": settings.region})
        order_id = flow.post(flow.order_body(f"image-{suffix}", 1))["order_id"]
        assert flow.wait_final([order_id], timeout=60)[order_id]["status"] == "FILLED"
        aws = Aws(settings)
        (beat,) = aws.dynamodb.scan(TableName=names_for(settings).heartbeats_table)["Items"]
        worker_id = beat["worker_id"]["S"]
        assert (worker_id, beat["pid"]["N"]) == (f"worker-{beat['host']['S']}-1", "1")
        order = OrderStore(aws).get(order_id)
        assert order is not None and order["provider"] == "primary"
        assert [h["actor"] for h in order["history"] if h["status"] == "FILLED"] == [worker_id]
    finally:
        for name in (intake, worker):
            remove_container(name)
    assert subprocess.run(["podman", "container", "exists", worker]).returncode == 1
