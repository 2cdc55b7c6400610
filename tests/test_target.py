"""An explicit target (issue 12): with no stack up and no target chosen nothing leaves the machine; AWS only when
asked; every botocore connection failure is one line."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tradeops.runtime.platform.errors import NoTarget
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.statefile import resolve_target


class Trap:
    """A TCP listener standing in for every proxy: it records each connection made to it and hangs up."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def trap(processes) -> Iterator[Trap]:
    t = Trap()
    yield t
    t.close()


def _env(tmp_path: Path, trap: Trap) -> dict[str, str]:
    """No stack, no target, believable AWS credentials, and every request routed into the trap."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRADEOPS_", "AWS_")) and k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
    proxy = f"http://127.0.0.1:{trap.port}"
    env.update({"TRADEOPS_STATE_DIR": str(tmp_path / "state"), "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy,
                "https_proxy": proxy, "http_proxy": proxy, "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
                "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS_DEFAULT_REGION": "eu-west-2",
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_MAX_ATTEMPTS": "1"})
    return env


@pytest.mark.parametrize("command", [
    ("flags",),
    ("flags", "set", "active", "secondary", "--reason", "primary down", "--yes"),
    ("exposure",),
    ("orders", "show", "ord-1"),
    ("audit", "verify"),
    ("runbook", "run", "failover", "--yes"),
])
def test_no_stack_and_no_target_is_one_line_and_no_aws_request(tmp_path, trap, command):
    """With no stack up and no target chosen, each command exits 1 with one line and sends nothing anywhere."""
    done = subprocess.run(["tradeops", *command], env=_env(tmp_path, trap), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: no local stack is up and no target was chosen")
    assert "--aws" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert trap.connections == 0


def test_aws_only_when_asked_and_a_dead_proxy_is_one_line(tmp_path, trap):
    """`--aws` does go to AWS (the trap sees it: so it would have seen the commands above); a proxy that hangs up,
    or one that is down, is reported in one line, not a botocore traceback."""
    done = subprocess.run(["tradeops", "--aws", "flags"], env=_env(tmp_path, trap), capture_output=True, text=True,
                          timeout=120)
    assert trap.connections >= 1
    assert done.returncode == 1, done.stderr
    assert "the connection to AWS failed" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    env = _env(tmp_path, trap)
    with socket.create_server(("127.0.0.1", 0)) as gone:
        port = gone.getsockname()[1]
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        env[name] = f"http://127.0.0.1:{port}"  # nothing listens there: the proxy is down
    env["TRADEOPS_TARGET"] = "aws"  # AWS chosen by environment this time
    down = subprocess.run(["tradeops", "audit", "verify"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert f"cannot reach AWS through the proxy http://127.0.0.1:{port}" in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1


def test_the_target_is_resolved_in_one_place(tmp_path, monkeypatch):
    """resolve_target: an endpoint setting, AWS when asked, and otherwise NoTarget (exit 1)."""
    monkeypatch.delenv("TRADEOPS_AWS_ENDPOINT_URL", raising=False)
    settings = load_settings(state_dir=tmp_path)
    with pytest.raises(NoTarget):
        resolve_target(settings)
    chosen, target = resolve_target(settings, aws=True)
    assert target.kind == "aws" and chosen.aws_endpoint_url is None
    assert "AWS account 123456789012" in target.describe("123456789012")
    _, target = resolve_target(load_settings(state_dir=tmp_path, aws_endpoint_url="http://127.0.0.1:9"))
    assert (target.kind, target.endpoint) == ("endpoint", "http://127.0.0.1:9")
    assert NoTarget.exit_code == 1


def test_status_without_a_stack_says_how_to_choose_a_target(tmp_path, trap):
    """`status` with nothing up says the stack is not up and how to choose AWS, in one line (exit 1)."""
    done = subprocess.run(["tradeops", "status"], env=_env(tmp_path, trap), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "not up" in done.stderr and "--aws" in done.stderr
    assert trap.connections == 0


def test_doctor_without_a_target_names_the_problem_and_the_fix(tmp_path, trap):
    """`doctor` with nothing up: the target line is a problem with its fix, AWS checks are skipped, exit 1."""
    done = subprocess.run(["tradeops", "doctor"], env=_env(tmp_path, trap), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("PROBLEM target") and "fix: `tradeops up`" in lines[0]
    assert any(line.startswith("skipped") and "audit chain" in line for line in lines)
    assert trap.connections == 0
