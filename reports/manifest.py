"""What an evidence pack must hold, and how a pack is checked against its manifest. Pure.

A pack is a zip of run folders and reports, ``audit/segment.json`` (the audit chain's records of the
period, exactly as stored: seq, body, SHA-256) and ``manifest.json``: the SHA-256 and size of every
other file, the audit segment's bounds and the chain head when the pack was made, the tradeops
version, when and by whom. :mod:`tradeops.reports.evidence` reads and writes zips; this module only
compares: :func:`check_files` names every file that changed, went missing or was slipped in, and
:func:`check_segment` walks the audit segment's hash chain and names a removed, edited or reordered
record, against the bounds the manifest recorded. :func:`check_reference` compares a pack's manifest with the
manifest of a copy held elsewhere (the one kept under Object Lock when the pack was uploaded), which is
what catches a pack whose files were edited and whose manifest was then recomputed to match them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from tradeops.runbooks.audit import StoredRecord, digest

__all__ = ["MANIFEST", "SEGMENT", "check_files", "check_reference", "check_segment", "segment_bounds"]

MANIFEST = "manifest.json"
SEGMENT = "audit/segment.json"


def check_files(listed: Sequence[Mapping[str, Any]], actual: Mapping[str, str]) -> list[str]:
    """Problems between the manifest's files (``path``, ``sha256``) and the pack's (path → SHA-256); [] if none."""
    problems: list[str] = []
    names = {str(f["path"]) for f in listed}
    for f in listed:
        path = str(f["path"])
        if path not in actual:
            problems.append(f"{path}: missing from the pack")
        elif actual[path] != f["sha256"]:
            problems.append(f"{path}: changed (SHA-256 {actual[path][:16]}…, "
                            f"the manifest says {str(f['sha256'])[:16]}…)")
    for path in sorted(set(actual) - names - {MANIFEST}):
        problems.append(f"{path}: not in the manifest (added after the pack was made)")
    return problems


def segment_bounds(records: Sequence[StoredRecord]) -> dict[str, Any]:
    """What the manifest records of a segment: first and last seq, count, the first record's predecessor digest
    and the last record's digest."""
    if not records:
        return {"first_seq": None, "last_seq": None, "records": 0, "prev_sha256": None, "last_sha256": None}
    ordered = sorted(records, key=lambda r: r.seq)
    try:
        prev = json.loads(ordered[0].body).get("prev_sha256")
    except (ValueError, AttributeError):
        prev = None
    return {"first_seq": ordered[0].seq, "last_seq": ordered[-1].seq, "records": len(ordered),
            "prev_sha256": prev, "last_sha256": ordered[-1].sha256}


def check_segment(chain: str, records: Sequence[StoredRecord], bounds: Mapping[str, Any]) -> list[str]:
    """Problems in an audit segment against the bounds in the manifest; [] when every record is there, intact
    and linked to the one before it."""
    problems: list[str] = []
    if not bounds.get("records"):
        return [] if not records else [f"{SEGMENT}: holds {len(records)} records, the manifest says none"]
    expected, prev = int(bounds["first_seq"]), bounds.get("prev_sha256")
    by_seq = {r.seq: r for r in records}
    for seq in range(expected, int(bounds["last_seq"]) + 1):
        rec = by_seq.get(seq)
        if rec is None:
            problems.append(f"{SEGMENT}: audit record {seq} was removed")
            prev = None  # the next record cannot link to a missing one; judge it on its own digest
            continue
        try:
            body = json.loads(rec.body)
        except ValueError:
            body = None
        if not isinstance(body, dict) or digest(body) != rec.sha256:
            problems.append(f"{SEGMENT}: audit record {seq} was edited (its content no longer matches its SHA-256)")
        elif body.get("seq") != seq or body.get("chain") != chain:
            problems.append(f"{SEGMENT}: audit record {seq} holds the content of record {body.get('seq')}")
        elif prev is not None and body.get("prev_sha256") != prev:
            problems.append(f"{SEGMENT}: audit record {seq} does not link to record {seq - 1} (prev_sha256 differs)")
        prev = rec.sha256
    extra = sorted(set(by_seq) - set(range(expected, int(bounds["last_seq"]) + 1)))
    if extra:
        problems.append(f"{SEGMENT}: records {extra} are outside the segment the manifest recorded")
    last = by_seq.get(int(bounds["last_seq"]))
    if last is not None and bounds.get("last_sha256") and last.sha256 != bounds["last_sha256"]:
        problems.append(f"{SEGMENT}: the last record's digest differs from the manifest's")
    return problems


def check_reference(manifest: Mapping[str, Any], reference: Mapping[str, Any], where: str) -> list[str]:
    """Problems between a pack's manifest and the manifest of its reference copy (``where``): every file whose
    digest differs, is missing or was added, and any other field of the manifest that differs; [] if none."""
    problems: list[str] = []
    mine = {str(f["path"]): str(f["sha256"]) for f in manifest.get("files") or []}
    theirs = {str(f["path"]): str(f["sha256"]) for f in reference.get("files") or []}
    for path in sorted(set(mine) | set(theirs)):
        if path not in mine:
            problems.append(f"{path}: in the copy at {where}, missing from this pack")
        elif path not in theirs:
            problems.append(f"{path}: not in the copy at {where} (added after the pack was made)")
        elif mine[path] != theirs[path]:
            problems.append(f"{path}: differs from the copy at {where} (SHA-256 {mine[path][:16]}…, "
                            f"the copy's {theirs[path][:16]}…)")
    for key in sorted((set(manifest) | set(reference)) - {"files", "manifest_sha256"}):
        if manifest.get(key) != reference.get(key):
            problems.append(f"{MANIFEST}: {key} differs from the copy at {where}")
    return problems
