"""The stack's ports: picked where outgoing connections do not take them, and picked again when another process
took one between the plan and the start (two stacks starting side by side)."""

from __future__ import annotations

import socket

import pytest

from tradeops.runtime.platform.errors import StackError
from tradeops.runtime.stack.plan import on_free_ports, plan
from tradeops.runtime.stack.processes import _outgoing_floor, free_port, port_free


def _hold(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_a_free_port_is_free_and_below_the_range_of_outgoing_connections(processes):
    """Every pick binds, and none is a port the kernel could hand an outgoing connection meanwhile."""
    low = _outgoing_floor()
    picks = [free_port() for _ in range(50)]
    assert all(port_free(p) for p in picks)
    assert all(p < low for p in picks) and len(set(picks)) > 40


def test_a_planned_component_whose_port_was_taken_starts_on_another(processes):
    """The intake planned on a free port that another process binds before the start moves to a fresh port, its
    command line and URL with it; a broker keeps its order and control ports together."""
    intake = next(c for c in plan({}, workers=1) if c.name == "intake")
    taken = intake.info["ports"][0]
    with _hold(taken):
        moved = on_free_ports(intake)
        assert moved.info["ports"][0] != taken and port_free(moved.info["ports"][0])
        assert str(moved.info["ports"][0]) in moved.argv and moved.info["url"].endswith(f":{moved.info['ports'][0]}")
        assert moved.health_url == moved.info["url"] + "/health"
    broker = next(c for c in plan({}, workers=1) if c.name == "broker-primary")
    with _hold(broker.info["ports"][1]):
        moved = on_free_ports(broker)
        assert broker.info["ports"][1] not in moved.info["ports"] and moved.health_url.startswith(moved.info["control"])


def test_a_fixed_port_that_is_taken_fails_naming_the_component_and_the_port(processes):
    """`--port intake=N` with N taken: one line naming the intake and N, never another port in its place."""
    port = free_port()
    with _hold(port):
        intake = next(c for c in plan({"intake": port}, workers=1) if c.name == "intake")
        with pytest.raises(StackError, match=f"^intake: port {port} on 127.0.0.1 is already in use$"):
            on_free_ports(intake)
