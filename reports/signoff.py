"""Signing reports and self-assessments off: who may sign, what a signature covers, and where a document
stands. Pure.

A signature binds one identity, in one capacity (``reviewer`` or ``approver``), to the SHA-256 of
exactly what was signed: the document's canonical JSON (``evidence.json`` of a drill or incident
report, ``self-assessment.json`` of a self-assessment version) without the fields that say when and by
whom it was rendered and how it stands (:data:`UNSIGNED_FIELDS`). Signatures are records of the audit
log (kind :data:`SIGNED`), hash-chained and anchored under Object Lock like every runbook decision,
so nobody can quietly rewrite one; :mod:`tradeops.reports.signoff_io` writes and reads them.

The rules, each failing closed (:class:`Refused`, exit 1):

- identities follow the approvals' rules (:mod:`tradeops.runbooks.identity`: an identity nobody can
  choose on AWS; compared ignoring case); a drill identity never signs;
- a reviewer holds one of the reviewing roles of the shared roster, an approver one of the approving
  roles (``service.yaml``: ``signoff``; e.g. ``smf24``, ``board-delegate``);
- an approver approves what was reviewed: the same digest carries a review, by someone else;
- one identity signs a version once, in one capacity; a version is approved once.

A document stands **approved** when its current digest carries a review and an approval by two
different identities holding their roles, **reviewed** with a review alone, and is a **draft**
otherwise. A signature on another digest is **void**: the document changed after it was signed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tradeops.runbooks.approvals import identity_key, is_drill_identity
from tradeops.runbooks.eventkinds import REPORT_SIGNED
from tradeops.runtime.platform.errors import BadInput, Refused

__all__ = [
    "APPROVED",
    "CAPACITIES",
    "DRAFT",
    "REVIEWED",
    "SIGNED",
    "UNSIGNED_FIELDS",
    "Policy",
    "Signature",
    "check_signature",
    "document_digest",
    "record_intact",
    "standing",
]

SIGNED = REPORT_SIGNED
"""The audit record kind of a signature."""
CAPACITIES = ("reviewer", "approver")
DRAFT, REVIEWED, APPROVED = "draft", "reviewed", "approved"
UNSIGNED_FIELDS = frozenset({"generated_at", "generated_by", "signoff", "document", "version"})
"""What a signature does not cover: when and by whom a document was rendered, its version number (a
signature records it beside the digest), and its sign-off state and identity, which change as it is signed."""


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def document_digest(document: Mapping[str, Any]) -> str:
    """The SHA-256 a signature binds: the document's canonical JSON without :data:`UNSIGNED_FIELDS`."""
    body = {k: v for k, v in document.items() if k not in UNSIGNED_FIELDS}
    return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()


def record_intact(record: Mapping[str, Any]) -> bool:
    """Whether an audit record (its body plus ``sha256``) still matches its own digest."""
    body = {k: v for k, v in record.items() if k != "sha256"}
    return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest() == record.get("sha256")


@dataclass(frozen=True)
class Policy:
    """Which roster roles review and which approve."""

    reviewer_roles: frozenset[str]
    approver_roles: frozenset[str]

    @classmethod
    def from_catalogue(cls, catalogue: Mapping[str, Any]) -> Policy:
        doc = catalogue.get("signoff") or {}
        return cls(frozenset(doc.get("reviewer_roles") or ()), frozenset(doc.get("approver_roles") or ()))

    def roles_for(self, capacity: str) -> frozenset[str]:
        return self.reviewer_roles if capacity == "reviewer" else self.approver_roles


@dataclass(frozen=True)
class Signature:
    """One signature as its audit record holds it."""

    document: str
    sha256: str
    capacity: str
    identity: str
    identity_source: str
    roles: tuple[str, ...]
    comment: str
    at: str
    version: int | None = None
    seq: int | None = None
    intact: bool = True

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Signature:
        data = record.get("data") or {}
        return cls(document=str(record.get("execution_id") or data.get("document")), sha256=str(data.get("sha256")),
                   capacity=str(data.get("as")), identity=str(record.get("actor")),
                   identity_source=str(record.get("identity_source")), roles=tuple(data.get("roles") or ()),
                   comment=str(data.get("comment") or ""), at=str(record.get("at")),
                   version=data.get("version"), seq=record.get("seq"), intact=record_intact(record))

    def data(self) -> dict[str, Any]:
        """What the audit record's ``data`` holds."""
        return {"document": self.document, "sha256": self.sha256, "as": self.capacity, "roles": list(self.roles),
                "comment": self.comment, "version": self.version}

    def as_dict(self) -> dict[str, Any]:
        return {"as": self.capacity, "identity": self.identity, "identity_source": self.identity_source,
                "roles": list(self.roles), "comment": self.comment, "at": self.at, "sha256": self.sha256,
                "version": self.version, "audit_seq": self.seq}


def _counts(policy: Policy, signature: Signature, digest: str) -> bool:
    return (signature.intact and signature.sha256 == digest
            and bool(set(signature.roles) & policy.roles_for(signature.capacity)))


def check_signature(policy: Policy, *, digest: str, capacity: str, identity: str, source: str,
                    held: Iterable[str], comment: str, existing: Sequence[Signature]) -> None:
    """Refuse a signature the rules would not count (one line); return if it may be recorded."""
    if capacity not in CAPACITIES:
        raise BadInput(f"--as must be reviewer or approver, not {capacity!r}")
    if len(comment.strip()) < 3:
        raise BadInput("--comment is required: say what you reviewed or why you approve")
    if is_drill_identity(identity, source):
        raise Refused(f"refused: {identity} is a drill identity; only people sign reports off")
    wanted = policy.roles_for(capacity)
    has = set(held)
    if not has & wanted:
        mine = ", ".join(sorted(has)) or "no role"
        raise Refused(f"refused: {identity} has {mine}; signing as {capacity} needs one of "
                      f"{', '.join(sorted(wanted)) or '(no role is configured)'} in the roster")
    valid = [s for s in existing if _counts(policy, s, digest)]
    for s in valid:
        if identity_key(s.identity) == identity_key(identity):
            raise Refused(f"refused: {identity} has already signed this version as {s.capacity} ({s.at}); "
                          "one identity signs a version once")
    if capacity == "approver":
        if not any(s.capacity == "reviewer" for s in valid):
            raise Refused("refused: this version has no review yet; an approver approves what was reviewed")
        done = next((s for s in valid if s.capacity == "approver"), None)
        if done is not None:
            raise Refused(f"refused: this version was approved already by {done.identity} ({done.at})")


def standing(policy: Policy, digest: str, signatures: Sequence[Signature]) -> dict[str, Any]:
    """Where a document stands: draft, reviewed or approved, its valid signatures, and the void ones with why."""
    valid: list[Signature] = []
    void: list[dict[str, Any]] = []
    reviewers: set[str] = set()
    signed: set[str] = set()
    for s in sorted(signatures, key=lambda s: (s.at, s.seq or 0)):
        why = None
        if not s.intact:
            why = "its audit record no longer matches its digest (edited)"
        elif s.sha256 != digest:
            why = "the document changed after it was signed"
        elif not set(s.roles) & policy.roles_for(s.capacity):
            why = f"{s.identity} did not hold a {s.capacity}'s role when signing"
        elif identity_key(s.identity) in signed:
            why = f"{s.identity} had signed this version already; one identity signs a version once"
        elif s.capacity == "approver" and (identity_key(s.identity) in reviewers or not reviewers):
            why = "an approval counts only of a version someone else reviewed"
        if why:
            void.append({**s.as_dict(), "void": why})
            continue
        valid.append(s)
        signed.add(identity_key(s.identity))
        if s.capacity == "reviewer":
            reviewers.add(identity_key(s.identity))
    approved = any(s.capacity == "approver" for s in valid)
    state = APPROVED if approved else (REVIEWED if valid else DRAFT)
    return {"state": state, "sha256": digest, "signatures": [s.as_dict() for s in valid], "void": void,
            "read": True}
