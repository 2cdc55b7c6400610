"""IAM policy statements evaluated against one request, the AWS way, for what tradeops's templates use. Pure.

``tradeops doctor --aws`` evaluates the deployed roles with it (can the operator role write a routing flag? does
the break-glass role's trust policy take a caller without MFA?), and the tests evaluate the template's.

Why an evaluator of our own: moto's ``IAMPolicy`` evaluates only ``StringEquals`` and lets a statement match when
the request lacks the condition's key, so it would pass a trust policy that requires MFA for a caller without
MFA. The maintained simulator that evaluates every condition operator against a request context is a Node
library (``@cloud-copilot/iam-simulate``); the Python packages on the index that read IAM policies
(policyuniverse, parliament, iam-ape, policy-sentry) expand, lint or summarise them and take no request context.

The rules (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html): an
explicit Deny wins, then an Allow, else the request is implicitly denied; every operator of a Condition must
hold, and a key absent from the request fails it (``...IfExists`` and ``Null`` excepted); ``${aws:username}``-style
variables are read from the request. An operator it does not know raises, so a policy that starts using one
cannot pass silently. Not modelled: NotAction/NotResource/NotPrincipal, set operators (ForAnyValue/ForAllValues),
numeric and date operators, permission boundaries and SCPs.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

__all__ = ["ALLOW", "DENY", "IMPLICIT", "Request", "allowed", "decide"]

Request = Mapping[str, Any]
"""A request's condition keys: key → value (a str, or a list for a multivalued key)."""

Verdict = Literal["allow", "deny", "implicit"]
ALLOW: Verdict = "allow"
DENY: Verdict = "deny"
IMPLICIT: Verdict = "implicit"


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _variables(text: str, request: Request) -> str:
    # An absent variable makes the comparison fail (AWS: the condition does not match), never match "".
    return re.sub(r"\$\{([\w:/-]+)\}", lambda m: str(request.get(m.group(1), "\x00absent")), text)


def _like(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _arn_like(pattern: str, value: str) -> bool:
    # ARN operators compare each of the six colon-separated parts, with wildcards within a part.
    want, got = pattern.split(":", 5), value.split(":", 5)
    return len(want) == len(got) == 6 and all(_like(w, g) for w, g in zip(want, got, strict=True))


_COMPARE: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda want, got: want == got,
    "StringLike": _like,
    "ArnEquals": _arn_like,
    "ArnLike": _arn_like,
    "Bool": lambda want, got: want.lower() == got.lower(),
}


def _condition_holds(operator: str, key: str, wanted: Any, request: Request) -> bool:
    if operator == "Null":
        return (key not in request) == (str(wanted).lower() == "true")
    base, if_exists = (operator[:-8], True) if operator.endswith("IfExists") else (operator, False)
    if base not in _COMPARE:
        raise NotImplementedError(f"condition operator {operator} is not evaluated here")
    if key not in request:
        return if_exists
    compare = _COMPARE[base]
    values = [_variables(str(w), request) for w in _listed(wanted)]
    return any(compare(w, str(got)) for got in _listed(request[key]) for w in values)


def _matches(statement: Mapping[str, Any], action: str, resource: str | None, request: Request) -> bool:
    if not any(_like(str(a).lower(), action.lower()) for a in _listed(statement["Action"])):
        return False
    if resource is not None and not any(_like(_variables(str(r), request), resource)
                                        for r in _listed(statement.get("Resource", "*"))):
        return False
    return all(_condition_holds(op, key, wanted, request)
               for op, keys in statement.get("Condition", {}).items() for key, wanted in keys.items())


def decide(statements: Sequence[Mapping[str, Any]], action: str, resource: str | None = None,
           request: Request | None = None) -> Verdict:
    """``"allow"``, ``"deny"`` (an explicit Deny matched) or ``"implicit"`` (nothing allowed it).

    ``resource`` None evaluates a trust policy (its statements name a principal, not a resource)."""
    request = request or {}
    hits = [s["Effect"] for s in statements if _matches(s, action, resource, request)]
    return DENY if "Deny" in hits else ALLOW if "Allow" in hits else IMPLICIT


def allowed(statements: Sequence[Mapping[str, Any]], action: str, resource: str | None = None,
            request: Request | None = None) -> bool:
    return decide(statements, action, resource, request) == ALLOW
