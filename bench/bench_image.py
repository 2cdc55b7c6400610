"""The container image: how big it is, how long it takes to build, and how long a component takes from `podman run`
to its first passing health check.

Run:  python bench/bench_image.py [--runs 5]     (needs podman and runc; see ../shared/CONTAINERS.md)

Builds Containerfile from this checkout (base: TRADEOPS_IMAGE_BASE, else Debian's Python made by .ci/image-base),
starts a private local stack with no worker of its own, then --runs times each: an intake container and a worker
container from the image (host network, against the stack's emulator and brokers), timed from the `podman run`
to the first run of the image's HEALTHCHECK that passes (an intake answers /health; a worker's heartbeat is in
DynamoDB). The health check is run every 0.1 s by hand: there is no systemd here to schedule it. Prints medians.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's tests/ helpers

from tests.support.image import (
    base_image,
    build,
    inspect_image,
    podman_or_fail,
    remove_container,
    remove_image,
    run_detached,
    wait_healthy,
)
from tests.support.stack import stack_environment
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.statefile import resolve_settings
from tradeops.runtime.stack import supervisor


def start_to_healthy(image: str, name: str, command: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    try:
        run_detached(image, name, *command, env=env)
        wait_healthy(name, timeout=120)
        return time.monotonic() - started
    finally:
        remove_container(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    podman_or_fail()
    base = base_image()
    tag = f"localhost/tradeops-bench:{secrets.token_hex(4)}"
    build_seconds = build(tag, base=base)
    size, base_size = inspect_image(tag)["Size"], inspect_image(base)["Size"]
    state = Path(tempfile.mkdtemp(prefix="bench-image-"))
    os.environ.update(stack_environment(state))
    settings = load_settings(state_dir=state)
    supervisor.launch(settings, workers=0, local=True, ports={})
    timings: dict[str, list[float]] = {"intake": [], "worker": []}
    try:
        settings = resolve_settings(settings)
        env = {"TRADEOPS_AWS_ENDPOINT_URL": str(settings.aws_endpoint_url), "TRADEOPS_REGION": settings.region}
        brokers = {f"TRADEOPS_{p.upper()}_{k.upper()}": str(getattr(settings, f"{p}_{k}"))
                   for p in ("primary", "secondary") for k in ("url", "wire")}
        for run in range(args.runs):
            port = supervisor.free_port()
            timings["intake"].append(start_to_healthy(
                tag, f"bench-intake-{run}", ["python", "-m", "tradeops.runtime.orderpath.intake", "--host",
                                             "127.0.0.1", "--port", str(port)],
                {**env, "TRADEOPS_INTAKE_TOKEN": str(settings.intake_token)}))
            timings["worker"].append(start_to_healthy(tag, f"bench-worker-{run}", [], {**env, **brokers}))
    finally:
        supervisor.stop(settings)
        remove_image(tag)
    result = {"base": base, "build_seconds": round(build_seconds, 1), "image_mb": round(size / 1e6, 1),
              "base_mb": round(base_size / 1e6, 1), "added_mb": round((size - base_size) / 1e6, 1),
              "start_to_healthy_seconds": {k: {"median": round(statistics.median(v), 2),
                                               "runs": [round(x, 2) for x in v]} for k, v in timings.items()}}
    print(f"image {result['image_mb']} MB ({result['added_mb']} MB over the base {base}, {result['base_mb']} MB); "
          f"built in {result['build_seconds']} s")
    for name, figures in result["start_to_healthy_seconds"].items():
        print(f"{name}: podman run to healthy, median of {args.runs}: {figures['median']} s {figures['runs']}")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
