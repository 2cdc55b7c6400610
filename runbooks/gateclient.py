"""Asking the approval gate: a request naming the execution and step, signed by the caller's own credentials.

Used by the runbook actions that make a guarded change (:mod:`.actions`) and by people's approval
decisions when a gate is configured (``TRADEOPS_GATE_URL``). The caller never says who it is: the
proof (:mod:`.gateproof`) lets the gate ask STS. A gate that does not answer stops the step with one
line; the execution stays resumable (`tradeops runbook resume`).
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from tradeops.runbooks.gate import MAX_LIFETIME, request_digest
from tradeops.runbooks.gateproof import sign_proof
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import utcnow
from tradeops.runtime.platform.errors import BadInput, OperationFailed, Refused

__all__ = ["GateDown", "ask_gate"]


class GateDown(OperationFailed):
    """The approval gate did not answer: nothing changed, and the step can be resumed once it is back."""


def ask_gate(aws: Aws, op: str, execution_id: str, step_id: str, *, decision: str = "", reason: str = "",
             value: str = "", timeout: float | None = None) -> dict[str, Any]:
    """Send one request to the gate at ``TRADEOPS_GATE_URL``; its answer, or Refused / BadInput / GateDown.

    ``timeout``: how long to wait for the answer (default ``TRADEOPS_GATE_TIMEOUT_SECONDS``)."""
    url = aws.settings.gate_url
    if not url:
        raise OperationFailed("no approval gate is configured (TRADEOPS_GATE_URL)")
    request: dict[str, Any] = {"op": op, "execution_id": execution_id, "step_id": step_id,
                               "nonce": secrets.token_hex(16),
                               "expires_at": (utcnow() + MAX_LIFETIME / 2).isoformat()}
    if decision:
        request["decision"] = decision
    if reason:
        request["reason"] = reason
    if value:
        request["value"] = value
    proof = sign_proof(aws.credentials(), aws.settings, request_digest(request))
    try:
        answer = httpx.post(f"{url.rstrip('/')}/v1/gate", json={"request": request, "proof": proof},
                            timeout=timeout or aws.settings.gate_timeout_seconds)
    except httpx.HTTPError as exc:
        raise GateDown(f"the approval gate at {url} does not answer ({type(exc).__name__}): nothing changed; "
                       f"resume with `tradeops runbook resume {execution_id}` once it is back") from None
    body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
    if answer.status_code == 200:
        return dict(body)
    why = str(body.get("refused") or f"HTTP {answer.status_code}")
    if answer.status_code == 400:
        raise BadInput(f"the approval gate refused: {why}")
    if answer.status_code >= 500:
        raise GateDown(f"the approval gate failed ({why}): nothing changed; resume with "
                       f"`tradeops runbook resume {execution_id}`")
    raise Refused(f"the approval gate refused: {why}")
