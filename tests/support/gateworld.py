"""A world with an approval gate: the emulator with IAM access control on, the template deployed by an admin, the
people and the gate as IAM users holding the deployed roles' own policies, a roster naming the people, and gates
serving on threads. Used by the gate's tests and by the four-eyes tests that prove their rules through it."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3

from tests.support.stack import running_emulator
from tradeops.runbooks.audit import AuditLog
from tradeops.runbooks.gateclient import ask_gate
from tradeops.runbooks.gateservice import make_server
from tradeops.runbooks.identity import Operators, parse_operators
from tradeops.runbooks.loader import read_runbook_text, resolve_path, sha256_text
from tradeops.runbooks.store import ExecutionStore
from tradeops.runbooks.testing import install_roster
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.settings import Settings, load_settings
from tradeops.runtime.stack.deploy import deploy_stack
from tradeops.runtime.stack.principals import deployed_policies
from tradeops.runtime.stack.supervisor import free_port

__all__ = ["ACCOUNT", "GateWorld", "arn", "authed_emulator", "gate_world"]

ACCOUNT = "123456789012"


def arn(name: str) -> str:
    """The IAM user ARN STS answers for ``name``'s credentials (the identity the gate records)."""
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


@contextmanager
def authed_emulator() -> Iterator[str]:
    """A moto server of its own with IAM access control on after its first three requests; yields its URL."""
    with running_emulator({"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as endpoint:
        yield endpoint


def _user(iam: Any, name: str, policy: Mapping[str, Any]) -> boto3.Session:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return boto3.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                         region_name="eu-west-2")


@dataclass
class GateWorld:
    """Who is who in a gate world. ``people[name]`` is an Aws with that person's own credentials and the gate's URL."""

    settings: Settings  # no gate URL: what an admin's or a test's own reads use
    admin: Aws
    people: dict[str, Aws]
    sessions: dict[str, boto3.Session]
    roster: Operators
    gate_url: str
    drill_gate_url: str
    operate_policy: dict[str, Any]
    gate_settings: Settings
    gate_aws: Aws
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)

    def serve_gate(self, **settings: Any) -> str:
        """Start one more gate (GateRole's policy; ``settings`` changed in its configuration); its URL."""
        server = make_server(self.gate_settings.model_copy(update=settings), "127.0.0.1", free_port(),
                             aws=self.gate_aws)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def person(self, session: boto3.Session, **settings: Any) -> Aws:
        """An Aws signing with ``session``'s credentials, asking this world's gate unless ``settings`` say otherwise."""
        return Aws(self.settings.model_copy(update={"gate_url": self.gate_url, **settings}), session=session)

    def execution(self, runbook: str, *, executor: str = "alice", params: Mapping[str, Any] | None = None) -> str:
        """An execution of a shipped runbook as the runner writes it (as its executor), not yet past any step."""
        text = read_runbook_text(resolve_path(runbook))
        eid = f"{runbook}-{uuid.uuid4().hex[:10]}"
        ExecutionStore(self.people[executor]).create({
            "execution_id": eid, "runbook": runbook, "runbook_sha256": sha256_text(text), "runbook_text": text,
            "params": dict(params or {"void_reason": "the primary cannot answer", "active": "secondary",
                                      "drain_timeout": 5}),
            "status": "running", "executor": arn(executor), "executors": [arn(executor)], "created_at": iso(),
            "roster_digest": self.roster.digest})
        return eid

    def ask(self, who: str, op: str, eid: str, step: str, **kw: Any) -> dict[str, Any]:
        """``who`` asks the gate, signing with their own credentials."""
        return ask_gate(self.people[who], op, eid, step, **kw)

    def audit(self, eid: str | None = None) -> list[dict[str, Any]]:
        """The gate's audit records (of execution ``eid``, or all), oldest first."""
        return [e for e in AuditLog(self.admin).entries(eid) if e["kind"].startswith("gate.")]

    def refusals(self, eid: str) -> list[dict[str, Any]]:
        return [e for e in self.audit(eid) if e["kind"] == "gate.refused"]

    def acts(self, eid: str) -> list[dict[str, Any]]:
        return [e for e in self.audit(eid) if e["kind"] == "gate.acted"]

    def restore_roster(self) -> None:
        install_roster(self.admin, self.roster)


@contextmanager
def gate_world(endpoint: str, state_dir: Path, *, prefix: str,
               roles: Mapping[str, list[str]]) -> Iterator[GateWorld]:
    """The template deployed by an admin into ``endpoint`` (an :func:`authed_emulator`) under ``prefix``; each name
    in ``roles`` (and ``drill-runner``) an IAM user holding the deployed operator policy; a roster giving them
    ``roles``; a gate with GateRole's policy, and a drill environment's gate, each on a thread."""
    settings = load_settings(aws_endpoint_url=endpoint, name_prefix=prefix, param_prefix=f"/{prefix}",
                             stack_name=prefix, state_dir=state_dir)
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="eu-west-2", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    admin = Aws(settings, session=_user(iam, "admin", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    deploy_stack(admin, settings)
    # The operator policy and GateRole's as the deploy left them in IAM (what `tradeops up --enforce` gives its
    # people and its gate).
    policies = deployed_policies(admin)
    operate, gate_policy = policies["operate"], policies["gate"]
    iam = admin.client("iam")
    sessions = {n: _user(iam, n, operate) for n in (*roles, "drill-runner")}
    gate_session = _user(iam, "gate", gate_policy)
    roster = install_roster(admin, parse_operators(
        json.dumps({"operators": {arn(n): r for n, r in roles.items()}}), "the test's roster"))
    # The gate asks the brokers before releasing an order (none here is in flight: no broker answers).
    gate_settings = settings.model_copy(update={"primary_url": "http://127.0.0.1:9",
                                                "secondary_url": "http://127.0.0.1:9"})
    world = GateWorld(settings=settings, admin=admin, people={}, sessions=sessions, roster=roster, gate_url="",
                      drill_gate_url="", operate_policy=operate, gate_settings=gate_settings,
                      gate_aws=Aws(gate_settings, session=gate_session))
    try:
        world.gate_url = world.serve_gate()
        # A drill environment's gate: its own configuration lets drills set guarded flags.
        world.drill_gate_url = world.serve_gate(gate_drill_flags=True)
        world.people = {n: world.person(s) for n, s in sessions.items()}
        yield world
    finally:
        for server in world._servers:
            server.shutdown()
            server.server_close()
