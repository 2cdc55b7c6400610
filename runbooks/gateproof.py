"""Who asks the gate, proven by AWS: a signed ``sts:GetCallerIdentity`` request bound to the gate request.

The caller signs (SigV4, with its own credentials) a GetCallerIdentity request that carries the
digest of its gate request in a signed header, :data:`HEADER`, and hands the signed request to the
gate instead of a name. The gate sends it to STS itself (its own STS address, never one the caller
names) and STS answers with the caller's ARN. The gate never sees the caller's secret, and the
proof is good for that one gate request only: a changed header breaks the signature
(``SignatureDoesNotMatch``), and a proof for another request carries another digest. This is
HashiCorp Vault's "AWS IAM auth" method; it works the same against the local stack's emulator.

A proof can be replayed to STS by whoever holds it, so a proof alone never authorises twice: the gate
request carries a nonce and an expiry, and the gate refuses a nonce it has seen (:mod:`.gateservice`).
"""

from __future__ import annotations

from typing import Any, Final
from xml.etree import ElementTree

import botocore.auth
import botocore.awsrequest
import httpx
from botocore.credentials import Credentials

from tradeops.runtime.platform.errors import BadInput, Refused
from tradeops.runtime.platform.settings import Settings

__all__ = ["BODY", "HEADER", "caller_arn", "sign_proof", "sts_url"]

HEADER: Final = "X-Tradeops-Gate-Request"
"""The signed header holding the SHA-256 of the gate request the proof is for."""
BODY: Final = "Action=GetCallerIdentity&Version=2011-06-15"
_NS: Final = "{https://sts.amazonaws.com/doc/2011-06-15/}"


def sts_url(settings: Settings) -> str:
    """Where both sides send the proof: the emulator on the local stack, the regional STS endpoint on AWS."""
    return settings.aws_endpoint_url.rstrip("/") + "/" if settings.aws_endpoint_url \
        else f"https://sts.{settings.region}.amazonaws.com/"


def sign_proof(credentials: Credentials, settings: Settings, digest: str) -> dict[str, Any]:
    """A GetCallerIdentity request signed with ``credentials``, binding ``digest`` (the caller's side)."""
    request = botocore.awsrequest.AWSRequest(
        method="POST", url=sts_url(settings), data=BODY,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8", HEADER: digest})
    botocore.auth.SigV4Auth(credentials, "sts", settings.region).add_auth(request)
    return {"headers": {k: str(v) for k, v in request.headers.items()}, "body": BODY}


def _signed_headers(headers: dict[str, str]) -> set[str]:
    auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    signed = next((part.split("=", 1)[1] for part in auth.replace(",", " ").split()
                   if part.startswith("SignedHeaders=")), "")
    return {h.strip().lower() for h in signed.split(";") if h.strip()}


def caller_arn(proof: Any, digest: str, settings: Settings, *, timeout: float = 5.0) -> str:
    """The ARN STS answers for ``proof``, refused unless the proof is a signed GetCallerIdentity binding
    ``digest`` (the gate's side). BadInput for a malformed proof, Refused for one STS does not accept."""
    if not isinstance(proof, dict) or not isinstance(proof.get("headers"), dict) or proof.get("body") != BODY:
        raise BadInput("malformed proof: a signed sts:GetCallerIdentity request is needed")
    headers = {str(k): str(v) for k, v in proof["headers"].items()}
    bound = next((v for k, v in headers.items() if k.lower() == HEADER.lower()), None)
    if bound != digest:
        raise Refused("the proof was signed for another request (its digest differs)")
    if HEADER.lower() not in _signed_headers(headers):
        raise Refused(f"the proof does not sign {HEADER}: it could be attached to any request")
    # httpx sets Host from the gate's own STS address: a proof signed for another host fails there.
    headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
    try:
        answer = httpx.post(sts_url(settings), content=BODY, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise Refused(f"cannot check the proof: STS did not answer ({type(exc).__name__})") from None
    if answer.status_code != 200:
        raise Refused(f"STS refused the proof (HTTP {answer.status_code}): {_error_code(answer.text)}")
    # The answer comes from STS over the gate's own connection, not from the caller.
    arn = ElementTree.fromstring(answer.text).find(f".//{_NS}Arn")  # noqa: S314
    if arn is None or not arn.text:
        raise Refused("STS answered the proof without an ARN")
    return arn.text


def _error_code(text: str) -> str:
    start = text.find("<Code>")
    end = text.find("</Code>")
    return text[start + 6:end] if 0 <= start < end else "no error code"
