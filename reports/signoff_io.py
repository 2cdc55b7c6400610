"""Sign-offs in the audit log: what is being signed, the signatures it has, and recording one. The I/O shell of
:mod:`tradeops.reports.signoff`.

A document is a drill's or an incident's report folder (its ``evidence.json``) or a kept version of the
self-assessment (``self-assessment.json``). Before anything is signed or its state shown, the
document is checked against what it was built from: its own digest, and for a report every file of
its evidence appendix. A report whose run folder changed since it was built has changed, so its
signatures are void, and it cannot be signed until it is rebuilt and reviewed again.

Signatures are appended to the audit log (kind ``report.signed``, the document id as the record's
execution id), whose chain is then anchored under Object Lock, like a runbook execution's end.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradeops.reports.build import OUTPUTS, digests
from tradeops.reports.model import document_id
from tradeops.reports.periodic_io import ASSESSMENT, versions
from tradeops.reports.signoff import SIGNED, Policy, Signature, document_digest, standing
from tradeops.runbooks.audit import AuditLog
from tradeops.runbooks.identity import Identity, Operators
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import BadInput, TradeopsError
from tradeops.runtime.platform.settings import Settings

__all__ = ["Document", "find_document", "read_signatures", "record_signature", "state_of"]

log = logging.getLogger("tradeops.reports.signoff")


@dataclass(frozen=True)
class Document:
    """What a sign-off names: the document's id, kind, folder, digest now, version, and what changed since it
    was built (empty when nothing did)."""

    id: str
    kind: str
    title: str
    folder: Path
    sha256: str
    version: int | None
    changed: list[str]


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise BadInput(f"{path}: not a report document")
    return doc


def _folder(settings: Settings, target: str) -> Path:
    runs = Path(settings.runs_dir)
    if target == ASSESSMENT:
        kept = [v for period in sorted((runs / "self-assessments").glob("*")) for v in versions(period)]
        if not kept:
            raise BadInput(f"no self-assessment under {runs}/self-assessments: compile one first "
                           "(`tradeops report self-assessment --since DATE`)")
        return max(kept, key=lambda v: (v[1] / f"{ASSESSMENT}.json").stat().st_mtime)[1]
    for candidate in (Path(target), runs / target, runs / "incidents" / target):
        if candidate.is_dir():
            return candidate
    raise BadInput(f"nothing to sign at {target!r}: give a report folder (its path, or its name under "
                   f"{runs}), a self-assessment version folder, or `self-assessment` for the latest version")


def _changed(folder: Path, evidence: Mapping[str, Any]) -> list[str]:
    """The files of a report's folder that differ from its evidence appendix (changed, added or removed)."""
    listed = {str(f["path"]): str(f["sha256"]) for f in evidence.get("evidence") or []}
    now = {str(f["path"]): str(f["sha256"]) for f in digests(folder, exclude=OUTPUTS)}
    return sorted(p for p in set(listed) | set(now) if listed.get(p) != now.get(p))


def find_document(settings: Settings, target: str) -> Document:
    """The document at ``target`` (see :func:`_folder`); BadInput when there is none."""
    folder = _folder(settings, target)
    if (folder / "evidence.json").is_file():
        doc = _load(folder / "evidence.json")
        digest = document_digest(doc)
        changed = _changed(folder, doc)
        if (doc.get("document") or {}).get("sha256") not in (None, digest):
            changed.insert(0, "evidence.json")
        return Document(document_id(str(doc.get("kind")), str(doc.get("id"))), str(doc.get("kind")),
                        str(doc.get("title")), folder, digest, None, changed)
    if (folder / f"{ASSESSMENT}.json").is_file():
        doc = _load(folder / f"{ASSESSMENT}.json")
        digest = document_digest(doc)
        stored = (doc.get("document") or {})
        changed = [] if stored.get("sha256") == digest else [f"{ASSESSMENT}.json"]
        return Document(str(stored.get("id")), ASSESSMENT, f"Self-assessment {doc.get('since')} to {doc.get('until')}",
                        folder, digest, doc.get("version"), changed)
    if (folder / "result.json").is_file():
        raise BadInput(f"{folder} has no report yet: build it first (`tradeops report build {folder}`)")
    raise BadInput(f"nothing to sign in {folder}: no report (evidence.json) or self-assessment version")


def read_signatures(aws: Aws, document: str) -> list[Signature]:
    """Every signature the audit log holds for ``document``, as recorded (each checked against its digest)."""
    records, _problems = AuditLog(aws).timeline(document)
    return [Signature.from_record(r) for r in records if r.get("kind") == SIGNED]


def state_of(document: Document, policy: Policy, signatures: Sequence[Signature]) -> dict[str, Any]:
    """Where ``document`` stands; a document changed since it was built has every signature void."""
    state = standing(policy, document.sha256, signatures)
    if document.changed:
        why = f"the document changed since it was built ({', '.join(document.changed[:3])})"
        state["void"] = [*({**s, "void": why} for s in state["signatures"]), *state["void"]]
        state.update(state="draft", signatures=[], changed=document.changed)
    return state


def record_signature(aws: Aws, document: Document, *, capacity: str, identity: Identity, roster: Operators,
                     comment: str) -> Signature:
    """Append the signature to the audit log and anchor the chain (a failed anchor is logged: the scheduled anchor
    covers the record later)."""
    held = sorted(roster.roles_of(identity.name))
    audit = AuditLog(aws)
    record = audit.append(SIGNED, execution_id=document.id, actor=identity.name, identity_source=identity.source,
                          data={"document": document.id, "kind": document.kind, "title": document.title,
                                "sha256": document.sha256, "as": capacity, "roles": held, "comment": comment,
                                "version": document.version, "roster_version": roster.version,
                                "roster_digest": roster.digest})
    try:
        audit.anchor(by=identity.name, reason=f"{SIGNED} {document.id}")
    except TradeopsError as exc:
        log.warning("audit chain not anchored after signing %s: %s", document.id, exc)
    return Signature.from_record(record)
