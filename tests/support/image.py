"""The project's container image, built from Containerfile and run with podman, as these machines allow.

What ../shared/CONTAINERS.md measured: podman's default runtime (crun) refuses hybrid cgroups, so runc;
`podman run` needs explicit ulimits; no public registry is reachable, so the base is Debian's Python made
with mmdebstrap (`.ci/image-base`); pip inside the build reaches the index through a proxy whose CA only the
host's bundle holds, so that bundle goes in as a build secret (a mount of the install step: no layer keeps
it). The image test (tests/test_image.py) and the image benchmark (bench/bench_image.py) use these.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]  # tests/support/image.py -> the checkout
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
LOCAL_BASE = "localhost/tradeops-base:bookworm"


def podman_or_fail() -> str:
    """The podman binary; in CI (CI=true) its absence (or runc's) fails the test, elsewhere it skips."""
    found = shutil.which("podman")
    if found and shutil.which("runc"):
        return found
    message = ("podman with runc is not installed (apt-get install -y podman buildah fuse-overlayfs uidmap slirp4netns "
               "mmdebstrap; apt-get install -y --no-install-recommends runc; .ci/run does it)")
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def base_image() -> str:
    """The base to build from: TRADEOPS_IMAGE_BASE (python:3.11-slim where a registry answers), else the local one."""
    chosen = os.environ.get("TRADEOPS_IMAGE_BASE")
    if chosen:
        return chosen
    made = subprocess.run([str(REPO / ".ci" / "image-base"), LOCAL_BASE], capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, f".ci/image-base failed: {made.stdout}{made.stderr}"
    return LOCAL_BASE


def host_ca_bundle() -> Path | None:
    """This machine's CA bundle, as pip on it finds one (PIP_CERT, then OpenSSL's default), if there is one."""
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"podman {' '.join(args[:3])}...: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


def build(tag: str, *, base: str) -> float:
    """Build Containerfile from this checkout as ``tag``; the seconds it took. No intermediate image is kept."""
    secret = host_ca_bundle()
    started = time.monotonic()
    podman("build", "--layers=false", "--format", "docker", "--file", str(REPO / "Containerfile"),
           "--build-arg", f"BASE={base}", *(["--secret", f"id=pip-cert,src={secret}"] if secret else []),
           "--tag", tag, str(REPO), timeout=900)
    return time.monotonic() - started


def inspect_image(tag: str) -> dict:
    return json.loads(podman("image", "inspect", tag).stdout)[0]


def run_detached(image: str, name: str, *command: str, env: dict[str, str]) -> None:
    """Start ``command`` (or the image's default) from ``image`` on the host's network, as container ``name``."""
    settings = [item for key, value in sorted(env.items()) for item in ("--env", f"{key}={value}")]
    podman("run", "--detach", "--name", name, "--network", "host", *LIMITS, *settings, image, *command)


def healthy(name: str) -> bool:
    """One run of the image's HEALTHCHECK in container ``name`` (there is no systemd here to schedule it)."""
    return podman("healthcheck", "run", name, check=False, timeout=30).returncode == 0


def wait_healthy(name: str, timeout: float, every: float = 0.1) -> float:
    """Seconds until the container's health check first passes; fails with its last log lines after ``timeout``."""
    started = time.monotonic()
    while not healthy(name):
        if time.monotonic() - started > timeout:
            logs = podman("logs", "--tail", "5", name, check=False).stdout
            raise AssertionError(f"container {name} not healthy within {timeout}s: {logs}")
        time.sleep(every)
    return time.monotonic() - started


def remove_container(name: str) -> None:
    podman("rm", "--force", "--time", "10", name, check=False, timeout=60)


def remove_image(tag: str) -> None:
    podman("rmi", "--force", tag, check=False, timeout=60)
