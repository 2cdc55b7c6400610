"""The one shared roster of operators: identity → roles, versioned, in SSM Parameter Store.

Every decision that depends on a role (a four-eyes approval, a break-glass change, a reimbursement
approval) reads this roster, never a file in the caller's working directory: a private copy of the
operators file changes nothing. SSM keeps every version, so ``operators show --version N`` and the
history are SSM's own. Each runbook execution records the digest of the roster it started under
and refuses decisions and resumes under another one.

How it changes:

- **seeding**: while no roster exists, the local operators file is written as version 1 (recorded
  in the audit log); there is nobody yet who could approve it;
- **afterwards only through four-eyes**: ``tradeops operators apply FILE`` stores the file as a
  *proposal* (under its digest) and runs the ``change-operators`` runbook, whose approved step
  promotes the proposal (:func:`Roster.apply`), refusing it if the roster moved on since the proposal
  was made.
"""

from __future__ import annotations

import json
from typing import Any

from tradeops.runbooks.audit import AuditLog
from tradeops.runbooks.eventkinds import ROSTER_SEEDED
from tradeops.runbooks.identity import Identity, Operators, parse_operators
from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.errors import NotFound, OperationFailed, Refused, TradeopsError
from tradeops.runtime.platform.names import Names, names_for

__all__ = ["Roster"]

# Standard parameters hold 4 KB; Intelligent-Tiering moves a larger roster to the advanced tier (8 KB).
_TIER = "Intelligent-Tiering"


def _operators(value: str, source: str, version: int | None) -> tuple[Operators, dict[str, Any]]:
    try:
        record = json.loads(value)
        roster = parse_operators(json.dumps(record["roster"]), source)
    except (ValueError, KeyError, TypeError, TradeopsError) as exc:
        raise OperationFailed(f"{source} is unreadable ({exc}); restore a good version") from None
    return Operators(roles=roster.roles, break_glass=roster.break_glass, source=source, version=version), record


class Roster:
    """The shared roster under ``<param_prefix>/roster``."""

    def __init__(self, aws: Aws, names: Names | None = None) -> None:
        self.aws = aws
        self.names = names or names_for(aws.settings)
        self.param = self.names.roster_param

    def _get(self, name: str) -> dict[str, Any] | None:
        ssm = self.aws.ssm
        with aws_errors("read the roster"):
            try:
                return dict(ssm.get_parameter(Name=name)["Parameter"])
            except ssm.exceptions.ParameterNotFound:
                return None
            except ssm.exceptions.ParameterVersionNotFound:
                return None

    def current(self) -> Operators | None:
        """The roster now, or None before it was seeded."""
        got = self._get(self.param)
        if got is None:
            return None
        version = int(got["Version"])
        return _operators(got["Value"], f"roster v{version}", version)[0]

    def require(self) -> Operators:
        roster = self.current()
        if roster is None:
            raise NotFound("there is no roster of operators yet: seed it with `tradeops operators apply "
                           "operators.yaml` (see runbooks/operators.example.yaml)")
        return roster

    def at_version(self, version: int) -> Operators:
        got = self._get(f"{self.param}:{int(version)}")
        if got is None:
            raise NotFound(f"the roster has no version {version}")
        return _operators(got["Value"], f"roster v{version}", version)[0]

    def history(self) -> list[dict[str, Any]]:
        """Every version: when, by whom, under which execution, its digest and size."""
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Name": self.param}
        ssm = self.aws.ssm
        while True:
            with aws_errors("read the roster history"):
                try:
                    page = ssm.get_parameter_history(**kwargs)
                except ssm.exceptions.ParameterNotFound:
                    return []
            for p in page.get("Parameters", []):
                version = int(p["Version"])
                roster, record = _operators(p["Value"], f"roster v{version}", version)
                out.append({"version": version, "digest": roster.digest, "operators": len(roster.roles),
                            "set_by": record.get("set_by"), "at": record.get("at"),
                            "execution_id": record.get("execution_id"), "how": record.get("how")})
            if not page.get("NextToken"):
                return sorted(out, key=lambda r: r["version"])
            kwargs["NextToken"] = page["NextToken"]

    def _put(self, name: str, record: dict[str, Any], *, overwrite: bool) -> int:
        ssm = self.aws.ssm
        with aws_errors("write the roster"):
            try:
                return int(ssm.put_parameter(Name=name, Value=json.dumps(record, sort_keys=True), Type="String",
                                             Overwrite=overwrite, Tier=_TIER)["Version"])
            except ssm.exceptions.ParameterAlreadyExists:
                raise Refused("a roster exists already; it changes only through four-eyes: "
                              "`tradeops operators apply FILE`") from None

    def seed(self, operators: Operators, *, actor: Identity) -> Operators:
        """Write the first roster (refused once one exists), and record it in the audit log."""
        record = {"roster": operators.as_document(), "set_by": actor.name, "at": iso(), "how": "seeded",
                  "execution_id": None, "previous_digest": None}
        version = self._put(self.param, record, overwrite=False)
        AuditLog(self.aws).append(ROSTER_SEEDED, actor=actor.name, identity_source=actor.source,
                                  data={"version": version, "digest": operators.digest,
                                        "operators": len(operators.roles), "source": operators.source})
        return Operators(roles=operators.roles, break_glass=operators.break_glass, source=f"roster v{version}",
                         version=version)

    def propose(self, operators: Operators, *, actor: Identity) -> dict[str, Any]:
        """Store ``operators`` as a proposal against the current roster; returns the proposal."""
        base = self.require()
        if base.digest == operators.digest:
            raise Refused(f"{operators.source} is the roster already (v{base.version}); nothing to change")
        proposal = {"roster": operators.as_document(), "digest": operators.digest, "base_version": base.version,
                    "base_digest": base.digest, "proposed_by": actor.name, "at": iso(), "source": operators.source}
        self._put(self.names.roster_proposal_param(operators.digest), proposal, overwrite=True)
        return proposal

    def proposal(self, digest: str) -> tuple[Operators, dict[str, Any]]:
        got = self._get(self.names.roster_proposal_param(digest))
        if got is None:
            raise NotFound(f"no roster proposal {digest[:16]} (`tradeops operators apply FILE` makes one)")
        operators, record = _operators(got["Value"], f"proposal {digest[:16]}", None)
        if operators.digest != record.get("digest") or not operators.digest.startswith(digest):
            raise OperationFailed(f"proposal {digest[:16]} does not match its digest; refused")
        return operators, record

    def apply(self, digest: str, *, actor: str, execution_id: str | None) -> Operators:
        """Promote a proposal to the roster, refused if the roster changed since the proposal was made."""
        operators, proposal = self.proposal(digest)
        current = self.require()
        if current.version != proposal["base_version"] or current.digest != proposal["base_digest"]:
            raise Refused(f"the roster is v{current.version} now, but proposal {digest[:16]} was made against "
                          f"v{proposal['base_version']}; make the proposal again")
        record = {"roster": operators.as_document(), "set_by": actor, "at": iso(), "how": "four-eyes",
                  "execution_id": execution_id, "previous_digest": current.digest,
                  "proposed_by": proposal.get("proposed_by")}
        version = self._put(self.param, record, overwrite=True)
        return Operators(roles=operators.roles, break_glass=operators.break_glass, source=f"roster v{version}",
                         version=version)
