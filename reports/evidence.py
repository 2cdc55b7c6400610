"""Evidence packs: make, verify, and keep them for six years under S3 Object Lock. The I/O shell.

``pack`` zips the run folders and reports of a period, the audit chain's records of that period
(``audit/segment.json``) and a manifest (:mod:`tradeops.reports.manifest`). The audit chain is
verified whole first: a pack is never made from a broken chain. ``verify`` re-reads a zip and
re-checks every digest and the audit segment's chain. ``upload`` stores a pack in a bucket created
with Object Lock, in compliance mode with a retention date: until that date nobody, root included,
can delete or overwrite that version.

A pack checks itself only against its own manifest, and whoever edits a file can recompute the
manifest too. So ``verify`` also takes a reference held elsewhere: ``expect``, the manifest's SHA-256
printed when the pack was made (or the zip's own), and ``reference``, the copy kept under Object Lock
(:func:`fetch_reference` refuses a copy that is not locked in compliance mode: it would prove nothing).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tradeops import __version__
from tradeops.reports.manifest import MANIFEST, SEGMENT, check_files, check_reference, check_segment, segment_bounds
from tradeops.runbooks.audit import AuditLog, StoredRecord
from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.clock import iso, parse_iso
from tradeops.runtime.platform.errors import BadInput, CheckFailed, NotFound
from tradeops.runtime.platform.settings import Settings

__all__ = ["RETENTION_YEARS", "PackResult", "Verified", "check_request", "fetch_reference", "pack", "parse_s3_object",
           "parse_s3_url", "require_object_lock", "retain_until", "upload", "verify"]

RETENTION_YEARS = 6
"""How long packs are kept: at least the six years SYSC 15A.6.2R asks for each version of the self-assessment's
records, which the packs and self-assessment versions are."""
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class PackResult:
    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    runs: list[str]


@dataclass(frozen=True)
class Verified:
    path: Path
    ok: bool
    problems: list[str]
    manifest: dict[str, Any]


def _when(folder: Path) -> str | None:
    """When a report folder's run or incident happened (result.json's end, or evidence.json's start)."""
    for name, keys in (("result.json", ("ended_at", "started_at")), ("evidence.json", ("scenario",))):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if name == "result.json":
            return next((str(data[k]) for k in keys if data.get(k)), None)
        scenario = data.get("scenario") or {}
        return str(scenario.get("ended_at") or scenario.get("started_at") or data.get("generated_at") or "") or None
    return None


def _report_folders(root: Path, since: datetime, until: datetime) -> list[Path]:
    found: set[Path] = set()
    if not root.is_dir():
        return []
    for marker in [*root.rglob("result.json"), *root.rglob("evidence.json")]:
        folder = marker.parent
        if folder.name == "load" or any(p.name == "load" for p in folder.relative_to(root).parents):
            continue  # a drill's load folder travels inside its drill's folder
        at = _when(folder)
        try:
            when = parse_iso(at) if at else None
        except ValueError:
            when = None
        if when is not None and since <= when < until:
            found.add(folder)
    # A folder inside another chosen folder travels with it.
    return sorted(f for f in found if not any(o != f and o in f.parents for o in found))


def check_request(*, since: datetime, until: datetime, out: Path, upload_to: str | None = None,
                  retain_years: int = RETENTION_YEARS) -> None:
    """BadInput for a pack request that cannot be met, before anything is read or written."""
    if until <= since:
        raise BadInput("--until must be after --since")
    if out.suffix != ".zip":
        raise BadInput(f"--out must name a .zip file, got {out}")
    if out.exists():
        raise BadInput(f"{out} exists; a pack is never overwritten: choose another --out")
    if upload_to is not None:
        parse_s3_url(upload_to)
    if retain_years < 1:
        raise BadInput("--retain-years must be at least 1")


def pack(settings: Settings, aws: Aws, *, since: datetime, until: datetime, out: Path, created_by: str,
         chain: str = "audit") -> PackResult:
    """Writes the evidence pack of [since, until) to ``out`` (see the module docstring)."""
    check_request(since=since, until=until, out=out)
    root = Path(settings.runs_dir)
    folders = _report_folders(root, since, until)
    log = AuditLog(aws, chain=chain)
    verification = log.verify()
    if not verification.ok:
        raise CheckFailed(f"no pack made: {verification.summary()}")
    stored = sorted(log.stored(), key=lambda r: r.seq)
    chosen = [r for r in stored if r.seq > 0 and since <= _record_at(r) < until]
    if chosen:  # a segment is contiguous: every record between the first and the last of the period
        chosen = [r for r in stored if chosen[0].seq <= r.seq <= chosen[-1].seq]
    head = (stored[-1].seq, stored[-1].sha256) if stored else (0, "")
    segment = [{"seq": r.seq, "body": r.body, "sha256": r.sha256} for r in chosen]
    entries: dict[str, bytes] = {SEGMENT: (json.dumps(segment, indent=1) + "\n").encode("utf-8")}
    for folder in folders:
        base = folder.relative_to(root).as_posix() if folder != root else folder.name
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            entries[f"runs/{base}/{path.relative_to(folder).as_posix()}"] = path.read_bytes()
    files = [{"path": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
             for name, data in sorted(entries.items())]
    runs = [f.relative_to(root).as_posix() if f != root else f.name for f in folders]
    manifest = {
        "kind": "tradeops-evidence-pack", "schema_version": 1, "tradeops_version": __version__,
        "created_at": iso(), "created_by": created_by, "since": iso(since), "until": iso(until),
        "runs": runs,
        "audit": {"chain": log.chain, "chain_head": {"seq": head[0], "sha256": head[1]},
                  "chain_verified": verification.summary(), **segment_bounds(chosen)},
        "files": files,
    }
    manifest["manifest_sha256"] = manifest_digest(manifest)
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, manifest_bytes)
        for name, data in sorted(entries.items()):
            zf.writestr(name, data)
    os.replace(tmp, out)
    return PackResult(path=out, manifest=manifest, manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
                      runs=runs)


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """The manifest's own SHA-256: over its canonical JSON without this field. It catches an edit of the
    manifest itself; the copy kept under Object Lock (and the digest printed when the pack was made) is what a
    re-written manifest cannot match."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def _record_at(record: StoredRecord) -> datetime:
    try:
        return parse_iso(str(json.loads(record.body).get("at")))
    except (ValueError, AttributeError, TypeError):
        return datetime.min.replace(tzinfo=UTC)


def _unzip(data: bytes | Path, what: str) -> tuple[dict[str, bytes], list[str]]:
    problems: list[str] = []
    contents: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                try:
                    contents[info.filename] = zf.read(info)
                except (zipfile.BadZipFile, zlib.error, EOFError):
                    # A byte changed inside the stored data: the zip's own CRC (or inflate) catches it first.
                    problems.append(f"{info.filename}: changed (its bytes no longer match the zip's CRC)")
                    contents[info.filename] = b""
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckFailed(f"{what}: not a readable zip ({exc})") from None
    return contents, problems


def _manifest(contents: Mapping[str, bytes], what: str) -> dict[str, Any]:
    try:
        manifest = json.loads(contents[MANIFEST])
    except (KeyError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or "files" not in manifest or "audit" not in manifest:
        raise CheckFailed(f"{what}: {MANIFEST} is missing or unreadable; this is not an intact evidence pack")
    return manifest


def verify(path: Path, *, expect: str | None = None, reference: tuple[str, bytes] | None = None) -> Verified:
    """Re-checks every digest of the pack and its audit segment's chain, and the pack against ``expect`` (a
    SHA-256 held elsewhere) and ``reference`` (where, and the bytes of the copy kept there); ``problems`` names
    each file or record."""
    if not path.is_file():
        raise NotFound(f"{path}: no such pack")
    if expect is not None and not _SHA256.match(expect.strip().lower()):
        raise BadInput(f"--expect must be a SHA-256 (64 hex digits), got {expect!r}")
    contents, problems = _unzip(path, str(path))
    manifest = _manifest(contents, str(path))
    listed, bounds = manifest["files"], manifest["audit"]
    if manifest.get("manifest_sha256") != manifest_digest(manifest):
        problems.append(f"{MANIFEST}: changed (its content no longer matches its own SHA-256)")
    actual = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    already = {p.split(":", 1)[0] for p in problems}
    problems += [p for p in check_files(listed, actual) if p.split(":", 1)[0] not in already]
    try:
        segment = [StoredRecord(int(r["seq"]), str(r["body"]), str(r["sha256"]))
                   for r in json.loads(contents.get(SEGMENT, b"[]"))]
    except (KeyError, ValueError, TypeError):
        segment = []
        problems.append(f"{SEGMENT}: unreadable")
    problems += check_segment(str(bounds.get("chain", "audit")), segment, bounds)
    if expect is not None:
        wanted = expect.strip().lower()
        held = {hashlib.sha256(contents.get(MANIFEST, b"")).hexdigest(), hashlib.sha256(path.read_bytes()).hexdigest()}
        if wanted not in held:
            problems.append(f"{MANIFEST}: its SHA-256 is {min(held)[:16]}…, not the expected {wanted[:16]}…: the pack "
                            "is not the one that digest was taken of (its manifest was rewritten)")
    if reference is not None:
        where, data = reference
        theirs, broken = _unzip(data, where)
        problems += [f"the copy at {where}: {p}" for p in broken]
        problems += check_reference(manifest, _manifest(theirs, where), where)
    return Verified(path=path, ok=not problems, problems=problems, manifest=manifest)


# ---- retention -------------------------------------------------------------------------------------
def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → (bucket, prefix without slashes at either end); BadInput otherwise."""
    if not url.startswith("s3://") or len(url) <= 5:
        raise BadInput(f"--upload must be s3://BUCKET/PREFIX, got {url!r}")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise BadInput(f"--upload must be s3://BUCKET/PREFIX, got {url!r}")
    return bucket, prefix.strip("/")


def parse_s3_object(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key); BadInput unless both are there."""
    bucket, _, key = url[5:].partition("/") if url.startswith("s3://") else ("", "", "")
    if not bucket or not key.strip("/"):
        raise BadInput(f"--against must be s3://BUCKET/KEY (the pack's key in the bucket), got {url!r}")
    return bucket, key


def fetch_reference(aws: Aws, url: str, *, now: datetime) -> tuple[str, bytes, dict[str, Any]]:
    """The copy at ``url`` and its lock; CheckFailed when it is not under Object Lock in compliance mode until a
    date after ``now`` (an unlocked copy can be replaced as easily as the pack: it would prove nothing)."""
    bucket, key = parse_s3_object(url)
    s3 = aws.client("s3")
    with aws_errors(f"read s3://{bucket}/{key}"):
        try:
            answer = s3.get_object(Bucket=bucket, Key=key)
        except s3.exceptions.NoSuchKey:
            raise NotFound(f"s3://{bucket}/{key}: no such object") from None
        data = answer["Body"].read()
    mode, until = answer.get("ObjectLockMode"), answer.get("ObjectLockRetainUntilDate")
    if mode != "COMPLIANCE" or until is None or until <= now:
        raise CheckFailed(f"s3://{bucket}/{key} is not under Object Lock in compliance mode (mode {mode or 'none'}, "
                          f"until {iso(until) if until else 'none'}): it is no reference")
    lock = {"mode": mode, "retain_until": iso(until), "version_id": answer.get("VersionId")}
    return f"s3://{bucket}/{key}", data, lock


def retain_until(now: datetime, years: int = RETENTION_YEARS) -> datetime:
    """The same day and time ``years`` later (28 February when the day is 29 February)."""
    try:
        return now.replace(year=now.year + years)
    except ValueError:
        return now.replace(year=now.year + years, day=28)


def require_object_lock(aws: Aws, url: str) -> tuple[str, str]:
    """The bucket and prefix of ``url`` once the bucket is known to have Object Lock; CheckFailed otherwise.
    Checked before a pack is written, so a refused upload leaves nothing behind."""
    bucket, prefix = parse_s3_url(url)
    s3 = aws.client("s3")
    with aws_errors(f"S3 bucket {bucket}"):
        try:
            config = s3.get_object_lock_configuration(Bucket=bucket).get("ObjectLockConfiguration") or {}
        except s3.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code not in ("ObjectLockConfigurationNotFoundError", "NoSuchBucket"):
                raise
            config = {"missing": code}
    if config.get("missing") == "NoSuchBucket":
        raise CheckFailed(f"bucket {bucket} does not exist (README, 'Evidence packs', says how to create it)")
    if config.get("ObjectLockEnabled") != "Enabled":
        raise CheckFailed(f"bucket {bucket} has no Object Lock: packs are only kept in a bucket created with "
                          "Object Lock (README, 'Evidence packs')")
    return bucket, prefix


def upload(aws: Aws, path: Path, url: str, *, until: datetime, metadata: Mapping[str, str]) -> dict[str, Any]:
    """Stores the pack at ``url`` under Object Lock in compliance mode until ``until``; the bucket must have been
    created with Object Lock (README, "Evidence packs")."""
    bucket, prefix = require_object_lock(aws, url)
    key = f"{prefix}/{path.name}" if prefix else path.name
    data = path.read_bytes()
    with aws_errors(f"store the pack in S3 bucket {bucket}"):
        answer = aws.client("s3").put_object(Bucket=bucket, Key=key, Body=data, ObjectLockMode="COMPLIANCE",
                                             ObjectLockRetainUntilDate=until, ContentType="application/zip",
                                             ChecksumAlgorithm="SHA256", Metadata=dict(metadata))
    return {"bucket": bucket, "key": key, "version_id": answer.get("VersionId"), "mode": "COMPLIANCE",
            "retain_until": iso(until), "sha256": hashlib.sha256(data).hexdigest()}
