"""The approval gate: the one principal that makes a guarded change, after the four-eyes rules say so.

``python -m tradeops.runbooks.gateservice --port P``: a supervised component on the local stack, an
ECS service on AWS (deploy/runtime.yaml) running as ``GateRole``, the only role that may write the
guarded flags, the roster, order state for declare-void and the decisions table. People's roles
cannot make those changes; they ask the gate.

``POST /v1/gate`` takes ``{"request": {...}, "proof": {...}}``: a request naming an execution and a
step (:func:`~tradeops.runbooks.gate.parse_request`) and a signed proof of who asks
(:mod:`.gateproof`). The gate, in this order, and failing closed at each:

1. parses the request (malformed: 400), learns the caller from STS through the proof, checks the
   request's expiry, and records its nonce (a replay is refused; the nonce is kept a day past the
   longest a request can be valid, then DynamoDB's TTL removes it);
2. reads the execution (for its runbook SHA-256, parameters and executors), its own shipped copy of
   that runbook (any other text is refused), the roster in force and the step's ledger
   (:mod:`.gateledger`);
3. applies :mod:`.gate`'s rule for the op (``request``, ``decide``, ``withdraw``, ``act``; ``restore``: a
   rollback's undo of the gate's own change of a step, once, to the value it replaced; ``flag``: a
   drill's flag change, where the gate's own configuration allows drills; ``unwind``: a decision on a
   double execution, by :mod:`.unwind`'s rules; ``resolve``: settling the orders in flight at the broker of a
   running execution's ``resolve_in_flight`` step from that broker's answers, for its executor, once, with no
   four-eyes: :func:`~tradeops.runbooks.gate.resolve_refusal`);
4. for ``act`` (and ``resolve``): marks the step acted (one conditional write: refused if the decisions changed since
   they were counted, or it was acted on already), appends the audit record, and only then makes the
   change, with the gate's own credentials.

Every refusal is answered 403 (400 when malformed) with its reason, and appended to the audit log as
``gate.refused``; nothing else changes. ``GET /health`` answers liveness.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from functools import cache
from http.server import ThreadingHTTPServer
from typing import Any

from tradeops.runbooks import eventkinds as ev
from tradeops.runbooks.actions import perform
from tradeops.runbooks.approvals import Approval, ApprovalRule, Choice
from tradeops.runbooks.audit import AuditLog
from tradeops.runbooks.gate import (
    Act,
    GateRequest,
    StepLedger,
    act_refusal,
    decision_context,
    decision_refusal,
    drill_flag_refusal,
    freshness_refusal,
    nonce_expiry,
    parse_request,
    request_digest,
    request_refusal,
    resolve_refusal,
    restore_refusal,
)
from tradeops.runbooks.gateledger import GateLedger
from tradeops.runbooks.gateproof import caller_arn
from tradeops.runbooks.identity import Identity, Operators, bound_roles, drill_roles, identity_from_arn
from tradeops.runbooks.loader import read_runbook_text, sha256_text, shipped_runbooks
from tradeops.runbooks.params import render
from tradeops.runbooks.registry import OperationContext
from tradeops.runbooks.roster import Roster
from tradeops.runbooks.store import ExecutionStore
from tradeops.runbooks.unwind import unwind
from tradeops.runtime.orderpath import alert_topic, inflight
from tradeops.runtime.orderpath.flags import Flags, validate_flag
from tradeops.runtime.platform import yamlfiles
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso, utcnow
from tradeops.runtime.platform.errors import BadInput, NotFound, Refused, TradeopsError, reason_of
from tradeops.runtime.platform.service import JsonHandler, service_main
from tradeops.runtime.platform.settings import Settings

__all__ = ["Gate", "GateRefused", "make_server", "serve", "shipped_steps"]

log = logging.getLogger("tradeops.gate")
_MAX_BODY = 64 * 1024
_IDS_AUDITED = 50
"""The most order ids of each kind a settlement's audit record names (its counts are always whole)."""


class GateRefused(Refused):
    """The gate said no; ``status`` is the HTTP answer (400 malformed, 403 refused)."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.status = status


@cache
def shipped_steps() -> Mapping[str, Mapping[str, Mapping[str, Any]]]:
    """The steps of every runbook this gate ships, by the runbook text's SHA-256 and step id."""
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for path in shipped_runbooks():
        text = read_runbook_text(path)
        doc = yamlfiles.load(text, f"runbook {path.name}")
        out[sha256_text(text)] = {str(s["id"]): s for s in doc.get("steps", [])}
    return out


class Gate:
    """The gate's work for one request; I/O through ``aws`` (the gate role's credentials)."""

    def __init__(self, settings: Settings, aws: Aws | None = None) -> None:
        self.settings = settings
        self.aws = aws or Aws(settings)
        self.ledger = GateLedger(self.aws)
        self.audit = AuditLog(self.aws)

    def handle(self, body: Any) -> dict[str, Any]:
        """Answer one POST body, or raise GateRefused (already audited)."""
        identity: Identity | None = None
        request: GateRequest | None = None
        try:
            if not isinstance(body, dict) or set(body) != {"request", "proof"}:
                raise BadInput("malformed: a gate call is {request, proof}")
            request = parse_request(body["request"])
            arn = caller_arn(body["proof"], request_digest(body["request"]), self.settings)
            identity = identity_from_arn(arn, bound=bound_roles(self.settings), drill_roles=drill_roles(self.settings))
            now = utcnow()
            why = freshness_refusal(request, now)
            if why:
                raise Refused(why)
            self.ledger.use_nonce(request.execution_id, request.nonce, at=iso(now),
                                  request_expires_at=request.expires_at.isoformat(), expires_at=nonce_expiry(now))
            return self._op(request, identity)
        except BadInput as exc:
            self._refused(request, identity, str(exc))
            raise GateRefused(str(exc), 400) from None
        except TradeopsError as exc:
            self._refused(request, identity, reason_of(exc))
            raise GateRefused(reason_of(exc)) from None

    def _refused(self, request: GateRequest | None, identity: Identity | None, reason: str) -> None:
        log.warning("refused %s: %s", request.op if request else "a request", reason)
        self.audit.append(ev.GATE_REFUSED, execution_id=request.execution_id if request else None,
                          step_id=request.step_id if request else None,
                          actor=identity.name if identity else "unproven",
                          identity_source=identity.source if identity else None,
                          data={"op": request.op if request else None, "reason": reason})

    def _op(self, request: GateRequest, who: Identity) -> dict[str, Any]:
        eid, sid = request.execution_id, request.step_id
        if request.op == "flag":
            return self._drill_flag(request, who)
        if request.op == "unwind":
            return self._unwind(request, who)
        try:
            meta = ExecutionStore(self.aws).meta(eid)
        except NotFound:
            raise Refused(f"no execution {eid}") from None
        sha = str(meta.get("runbook_sha256") or "")
        step = shipped_steps().get(sha, {}).get(sid)
        roster = Roster(self.aws).require()
        ledger = self.ledger.read(eid, sid)
        ctx = decision_context(eid, sid, sha, ledger, list(meta.get("executors") or ()), dict(roster.roles),
                               caller=who.name if request.op == "act" else None)
        if request.op == "request":
            why = request_refusal(step, ledger, execution_id=eid, step_id=sid, roster_now=roster.digest,
                                  roster_of_execution=str(meta.get("roster_digest") or ""))
            if why:
                raise Refused(why)
            assert step is not None
            action = step.get("action") or {}
            if ledger.requested:  # asked again (a resumed run): what approvers were shown stays as it was
                return {"requested": True, "already": True, "action": ledger.action, "args": dict(ledger.args)}
            args = render(action.get("args") or {}, dict(meta.get("params") or {}))
            if not self.ledger.open(eid, sid, requested_by=who.name, at=iso(), roster_digest=roster.digest,
                                    runbook_sha256=sha, action=str(action.get("name") or ""), args=args):
                return {"requested": True, "already": True}
            self._record(ev.GATE_REQUESTED, request, who, {"action": action.get("name"), "args": args,
                                                            "roster_digest": roster.digest, "runbook_sha256": sha})
            return {"requested": True, "action": action.get("name"), "args": args}
        if request.op == "resolve":
            return self._resolve(request, who, step, ledger, meta, roster)
        if request.op in ("decide", "withdraw"):
            return self._decide(request, who, step, ledger, ctx, roster.digest)
        if request.op == "restore":
            return self._restore(request, who, step, ledger)
        return self._act(request, who, step, ledger, ctx, roster.digest, dict(meta.get("params") or {}))

    def _record(self, kind: str, request: GateRequest, who: Identity, data: dict[str, Any]) -> None:
        self.audit.append(kind, execution_id=request.execution_id, step_id=request.step_id, actor=who.name,
                          identity_source=who.source, data={"op": request.op, "nonce": request.nonce, **data})

    def _decide(self, request: GateRequest, who: Identity, step: Mapping[str, Any] | None, ledger: StepLedger,
                ctx: Any, roster_digest: str) -> dict[str, Any]:
        why = decision_refusal(step, ledger, ctx, who=who.name, source=who.source, op=request.op,
                               roster_now=roster_digest)
        if why:
            raise Refused(why)
        eid, sid = request.execution_id, request.step_id
        if request.op == "withdraw":
            if not self.ledger.withdraw(eid, sid, who.name, at=iso(), reason=request.reason):
                raise Refused(f"{who.name} has no approval of step {sid} of {eid} to withdraw any more")
            self._record(ev.GATE_DECIDED, request, who, {"decision": "withdraw", "reason": request.reason})
            return {"withdrawn": True}
        assert step is not None
        choice: Choice = "reject" if request.decision == "reject" else "approve"
        approval = Approval.make(ctx, who.name, who.source, choice, reason=request.reason, at=iso())
        if not self.ledger.record_decision(approval, roster_digest=roster_digest):
            raise Refused(f"step {sid} of {eid} changed while deciding (acted on, or {who.name} decided meanwhile)")
        self._record(ev.GATE_DECIDED, request, who, {"decision": choice, "reason": request.reason,
                                                      "roles": list(approval.roles), "binding": approval.binding,
                                                      "rule": dict(ApprovalRule.from_spec(step["approval"]).__dict__)})
        return {"decided": choice, "identity": who.name, "binding": approval.binding, "roles": list(approval.roles)}

    def _act(self, request: GateRequest, who: Identity, step: Mapping[str, Any] | None, ledger: StepLedger,
             ctx: Any, roster_digest: str, params: dict[str, Any]) -> dict[str, Any]:
        eid, sid = request.execution_id, request.step_id
        rendered = render((step or {}).get("action", {}).get("args") or {}, params) if step else {}
        act, why = act_refusal(step, ledger, ctx, rendered_args=rendered, roster_now=roster_digest)
        if act is None:
            raise Refused(str(why))
        acted = {"by": who.name, "at": iso(), "action": act.action, "args": dict(act.args),
                 "approved_by": list(act.approved_by), "nonce": request.nonce}
        seq = ledger.decision_seq if step and "approval" in step else None
        if not self.ledger.mark_acted(eid, sid, acted, decision_seq=seq):
            raise Refused(f"step {sid} of {eid} changed while acting (a decision landed, or it was acted on)")
        # Recorded before the change: if the audit cannot record it, nothing changes.
        self._record(ev.GATE_ACTED, request, who, {k: v for k, v in acted.items() if k not in ("by", "at")})
        output = self._perform(act, eid, sid, who, self.ledger.record_outcome)
        return {"acted": True, "action": act.action, "output": output, "approved_by": list(act.approved_by)}

    def _perform(self, act: Act, eid: str, sid: str, who: Identity,
                 record: Callable[[str, str, dict[str, Any]], Any]) -> dict[str, Any]:
        """Make the change ``act`` with the gate's own credentials and ``record`` its outcome (output or error) in
        the ledger, where a resumed run finds it."""
        ctx_op = OperationContext(settings=self.settings, aws=self.aws, execution_id=eid, step_id=sid,
                                  actor=who.name, approvers=act.approved_by)
        try:
            output = perform(ctx_op, act.action, dict(act.args))
        except TradeopsError as exc:
            record(eid, sid, {"error": reason_of(exc)})
            raise
        record(eid, sid, {"output": output})
        return output

    def _resolve(self, request: GateRequest, who: Identity, step: Mapping[str, Any] | None, ledger: StepLedger,
                 meta: Mapping[str, Any], roster: Operators) -> dict[str, Any]:
        """Settle the orders in flight at the step's broker from its answers, with the gate's own credentials (the
        broker's key, order writes), for the running execution's executor: what it cannot settle stays in doubt."""
        eid, sid = request.execution_id, request.step_id
        rendered = render((step or {}).get("action", {}).get("args") or {}, dict(meta.get("params") or {})) \
            if step else {}
        act, why = resolve_refusal(step, ledger, execution_id=eid, step_id=sid, status=str(meta.get("status") or ""),
                                   current_step=str(meta.get("current_step") or ""),
                                   executors=list(meta.get("executors") or ()), rostered=who.name in roster.roles,
                                   who=who.name, provider=request.value, rendered_args=rendered)
        if act is None:
            raise Refused(str(why))
        acted = {"by": who.name, "at": iso(), "action": act.action, "args": dict(act.args), "nonce": request.nonce}
        if not self.ledger.mark_acted(eid, sid, acted, decision_seq=None):
            raise Refused(f"step {sid} of {eid} was acted on meanwhile; a second settlement is refused")
        try:
            result = inflight.resolve_in_flight(self.settings, self.aws, str(act.args["provider"]),
                                                actor=f"gate:resolve ({who.name}, {eid})")
        except TradeopsError as exc:
            # Marked acted, so not asked twice; audited as acted with its error (then refused, by handle), since an
            # order settled before the failure stays settled.
            self.ledger.record_outcome(eid, sid, {"error": reason_of(exc)})
            self._record(ev.GATE_ACTED, request, who, {"action": act.action, "args": dict(act.args),
                                                        "error": reason_of(exc)})
            raise
        output = {"resolved": list(result["resolved"]), "in_doubt": list(result["in_doubt"])}
        self.ledger.record_outcome(eid, sid, {"output": output})
        # Audited after the change, unlike an act: what was settled is known only once the broker has answered. The
        # acted mark above is written first, so it happens once; each settled order's history names the gate too.
        self._record(ev.GATE_ACTED, request, who, {
            "action": act.action, "args": dict(act.args), "resolved": len(output["resolved"]),
            "in_doubt": len(output["in_doubt"]), "resolved_ids": output["resolved"][:_IDS_AUDITED],
            "in_doubt_ids": output["in_doubt"][:_IDS_AUDITED]})
        return {"acted": True, "action": act.action, "output": output}

    def _restore(self, request: GateRequest, who: Identity, step: Mapping[str, Any] | None,
                 ledger: StepLedger) -> dict[str, Any]:
        """A rollback's restore of the value the gate's act on this step replaced: its own change, once."""
        eid, sid = request.execution_id, request.step_id
        changed = ((ledger.acted or {}).get("outcome") or {}).get("output") or {}
        current = Flags(self.aws).read().as_dict().get(str(changed.get("flag") or "")) if changed else None
        act, why = restore_refusal(step, ledger, self.ledger.restored(eid, sid), execution_id=eid, step_id=sid,
                                   value=request.value, current=current)
        if act is None:
            raise Refused(str(why))
        assert ledger.acted is not None
        restored = {"by": who.name, "at": iso(), "action": act.action, "args": dict(act.args), "before": current,
                    "nonce": request.nonce, "restores": {"by": ledger.acted.get("by"), "at": ledger.acted.get("at"),
                                                         "nonce": ledger.acted.get("nonce")}}
        if not self.ledger.mark_restored(eid, sid, restored):
            raise Refused(f"step {sid} of {eid} was restored meanwhile; a second restore is refused")
        # Recorded before the change, as an act is: if the audit cannot record it, nothing changes.
        self._record(ev.GATE_ACTED, request, who, {"restore": True,
                                                    **{k: v for k, v in restored.items() if k not in ("by", "at")}})
        output = self._perform(act, eid, sid, who, self.ledger.record_restore_outcome)
        return {"acted": True, "restored": True, "action": act.action, "output": output}

    def _unwind(self, request: GateRequest, who: Identity) -> dict[str, Any]:
        roster = Roster(self.aws).require()
        record = unwind(self.aws, request.execution_id, identity=who.name, source=who.source,
                        outcome=request.step_id, reason=request.reason, roles_of=dict(roster.roles))
        self._record(ev.GATE_DECIDED, request, who, {"unwind": True, "order_id": request.execution_id,
                                                      "outcome": request.step_id, "state": record.get("state"),
                                                      "reason": request.reason, "roster_digest": roster.digest})
        return record

    def _drill_flag(self, request: GateRequest, who: Identity) -> dict[str, Any]:
        why = drill_flag_refusal(request, who.name, drills_allowed=self.settings.gate_drill_flags)
        if why:
            raise Refused(why)
        flag, value = request.step_id, validate_flag(request.step_id, request.value)
        flags = Flags(self.aws)
        before = flags.read().as_dict()[flag]
        facts = {"drill": True, "flag": flag, "before": before, "after": value, "reason": request.reason}
        self._record(ev.GATE_ACTED, request, who, facts)  # before the change: unrecorded, nothing changes
        flags.set(flag, value, actor=who.name)
        alert_topic.notify(self.aws, f"Drill set flag {flag}: {before} -> {value}",
                           f"{who.name} ({request.execution_id}) set {flag} from {before} to {value} through the "
                           f"approval gate, without four-eyes, as this environment allows drills to: {request.reason}")
        return {"acted": True, "output": {"flag": flag, "previous": before, "value": value}}


def _handler(gate: Gate) -> type[JsonHandler]:
    class Handler(JsonHandler):
        server_version = "tradeops-gate"

        def do_GET(self) -> None:
            if self.path == "/health":
                self.reply(200, {"ok": True})
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/v1/gate":
                self.reply(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY:
                self.reply(413, {"refused": "request too large"})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except ValueError:
                body = None
            try:
                self.reply(200, gate.handle(body))
            except GateRefused as exc:
                self.reply(exc.status, {"refused": str(exc)})
            except Exception as exc:  # fail closed, with a reason, never a hang-up
                log.exception("gate failed")
                self.reply(500, {"refused": f"the gate failed: {type(exc).__name__}"})

    return Handler


def make_server(settings: Settings, host: str, port: int, aws: Aws | None = None) -> ThreadingHTTPServer:
    """The gate's HTTP server, bound and not yet serving (tests run it on a thread)."""
    server = ThreadingHTTPServer((host, port), _handler(Gate(settings, aws)))
    server.daemon_threads = True
    return server


def serve(settings: Settings, host: str, port: int) -> int:
    """Serve until SIGTERM/SIGINT."""
    server = make_server(settings, host, port)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    log.info("approval gate on %s:%d", host, port)
    done.wait()
    server.shutdown()
    server.server_close()
    return 0


def _main(argv: list[str] | None = None) -> int:
    return service_main(argv, prog="python -m tradeops.runbooks.gateservice", label="gate",
                        description=__doc__.splitlines()[0], serve=serve)


if __name__ == "__main__":
    raise SystemExit(_main())
