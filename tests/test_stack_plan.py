"""What a local stack starts, in what stages (runtime/stack/plan.py), and when a stopped stack counts as gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tradeops.runtime.stack.plan import STAGES, Simulated, plan, stages
from tradeops.runtime.stack.processes import group_running

# What each component needs running before it starts: its address is in the component's environment or command.
NEEDS = {
    "proxy-primary": {"broker-primary"},
    "proxy-secondary": {"broker-secondary"},
    "gate": {"broker-primary", "broker-secondary", "proxy-primary", "proxy-secondary"},
    "worker-1": {"broker-primary", "broker-secondary", "proxy-primary", "proxy-secondary"},
    "worker-2": {"broker-primary", "broker-secondary", "proxy-primary", "proxy-secondary"},
    "prices": {"broker-primary", "broker-secondary"},  # it pins their fill prices
    "monitor": {"prices"},
    "canary": {"intake", "broker-primary", "broker-secondary", "proxy-primary", "proxy-secondary"},
}


@pytest.mark.parametrize("fault_proxy", [False, True], ids=["direct", "proxied"])
@pytest.mark.parametrize("gate", [False, True], ids=["open", "gated"])
def test_every_component_starts_in_a_stage_after_everything_it_calls(processes, fault_proxy: bool, gate: bool) -> None:
    """Each component starts in a later stage than everything it calls, with or without fault proxies and the gate,
    and the plan lists them in start order. (Planning picks free ports: these tests bind sockets.)"""
    comps = plan({}, workers=2, fault_proxy=fault_proxy, gate=gate)
    stage = {c.name: c.stage for c in comps}
    for name, needs in NEEDS.items():
        if name in stage:
            assert all(stage[name] > stage[need] for need in needs if need in stage), (name, stage)
    assert [c.name for group in stages(comps) for c in group] == [c.name for c in comps]  # the plan is start order
    assert [STAGES[g[0].stage] for g in stages(comps)] == list(STAGES)


def test_the_callers_start_together_and_the_canary_last(processes) -> None:
    """The components that only call others share one stage, so a stack's start waits on the slowest of them, not
    their sum; the canary, which orders through the intake, comes after it."""
    groups = stages(plan({}, workers=2, gate=True))
    assert [sorted(c.name for c in g) for g in groups] == [
        ["broker-primary", "broker-secondary"],
        ["prices"],
        ["audit-anchor", "gate", "intake", "monitor", "worker-1", "worker-2"],
        ["canary"],
    ]


def test_a_real_broker_stack_starts_its_proxies_first(processes) -> None:
    real = {"primary": "https://alpha.example", "secondary": "https://beta.example"}
    groups = stages(plan({}, workers=1, simulate=Simulated(brokers=False, prices=False), fault_proxy=True,
                         real_brokers=real))
    assert [c.name for c in groups[0]] == ["proxy-primary", "proxy-secondary"]
    assert [c.info["upstream"] for c in groups[0]] == [real["primary"], real["secondary"]]


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_group_whose_last_process_has_exited_is_not_running_though_nobody_collected_it(processes) -> None:
    """A stopped stack's supervisor may wait a second for whoever adopted it to collect it: `down` does not wait
    with it. A group with a live member is running."""
    exited = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while _state(exited.pid) != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.02)
        os.killpg(exited.pid, 0)  # still a member as far as signals go
        assert not group_running(exited.pid)
    finally:
        exited.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        assert group_running(live.pid)
    finally:
        live.kill()
        live.wait()
    assert not group_running(live.pid)
