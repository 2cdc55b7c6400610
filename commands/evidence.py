"""`tradeops evidence pack|verify`: tamper-evident evidence packs, kept six years under S3 Object Lock.

The work is in tradeops.reports.evidence (zip, manifest, upload) and tradeops.reports.manifest (the checks),
imported inside the command bodies (the AWS SDK is not for `tradeops --version` to pay)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tradeops.commands.context import context
from tradeops.commands.output import JsonOpt, err, out, print_json
from tradeops.commands.report import SinceOpt, UntilOpt, period
from tradeops.runtime.platform.clock import utcnow
from tradeops.runtime.platform.errors import CheckFailed

__all__ = ["evidence_app"]

evidence_app = typer.Typer(help="Evidence packs: runs, reports and the audit log segment, with a manifest of "
                                "digests; verify them; keep them under S3 Object Lock.", no_args_is_help=True)


@evidence_app.command("pack")
def pack_cmd(
    since: SinceOpt,
    out_file: Annotated[Path, typer.Option("--out", metavar="FILE.zip", help="The pack to write (never overwritten).")],
    until: UntilOpt = None,
    upload_to: Annotated[str | None, typer.Option("--upload", metavar="s3://BUCKET/PREFIX",
                                                  help="Also store the pack there under Object Lock (compliance "
                                                       "mode) until the retention date.")] = None,
    retain_years: Annotated[int, typer.Option(help="Years the uploaded pack cannot be deleted or overwritten.")]
    = 6,
    chain: Annotated[str, typer.Option(help="Audit chain whose segment goes into the pack.")] = "audit",
    as_json: JsonOpt = False,
) -> None:
    """Bundle the period's drill runs and reports, the audit log segment and a manifest (SHA-256 of every file,
    the audit chain head, the tradeops version, when and by whom) into one zip.

    Examples:

      tradeops evidence pack --since 2026-11-01 --until 2026-12-01 --out evidence-2026-11.zip
      tradeops evidence pack --since 2026-11-01 --out ev.zip --upload s3://tradeops-evidence-123456789012-eu-west-2/packs
    """
    from tradeops.reports.evidence import check_request, pack, require_object_lock, retain_until, upload

    start, end = period(since, until)
    check_request(since=start, until=end, out=out_file, upload_to=upload_to, retain_years=retain_years)
    ctx = context()
    ctx.announce(quiet=as_json)
    if upload_to is not None:
        require_object_lock(ctx.aws, upload_to)
    identity = ctx.identity()
    made = pack(ctx.settings, ctx.aws, since=start, until=end, out=out_file,
                created_by=f"{identity.name} ({identity.source})", chain=chain)
    stored = None
    if upload_to is not None:
        stored = upload(ctx.aws, made.path, upload_to, until=retain_until(utcnow(), retain_years),
                        metadata={"manifest-sha256": made.manifest_sha256, "created-by": identity.name})
    if as_json:
        print_json({"target": ctx.target_json(), "pack": str(made.path), "manifest_sha256": made.manifest_sha256,
                    "runs": made.runs, "files": len(made.manifest["files"]), "audit": made.manifest["audit"],
                    "uploaded": stored})
        return
    audit = made.manifest["audit"]
    out.print(f"pack {made.path}: {len(made.runs)} runs, {len(made.manifest['files'])} files, audit records "
              f"{audit['first_seq']}..{audit['last_seq']} (chain head {audit['chain_head']['seq']})", markup=False)
    out.print(f"manifest SHA-256 {made.manifest_sha256}", markup=False)
    if stored:
        out.print(f"stored s3://{stored['bucket']}/{stored['key']} (version {stored['version_id']}), Object Lock "
                  f"{stored['mode']} until {stored['retain_until']}", markup=False)


@evidence_app.command("verify")
def verify_cmd(
    pack_file: Annotated[Path, typer.Argument(metavar="FILE.zip", help="The evidence pack.")],
    expect: Annotated[str | None, typer.Option(metavar="DIGEST", help="The pack's SHA-256 as recorded elsewhere "
                                               "(the manifest SHA-256 `evidence pack` printed, or the zip's).")]
    = None,
    against: Annotated[str | None, typer.Option(metavar="s3://BUCKET/KEY", help="The copy kept under Object Lock "
                                                "(`evidence pack --upload`): every file must match it.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-check every file's SHA-256 against the manifest and the audit segment's hash chain, and, since whoever
    edits a file can recompute the manifest too, against a reference held elsewhere: --expect the digest printed
    when the pack was made, --against the copy under Object Lock. Exit 1 naming each file that changed, each audit
    record removed or edited, and each difference from the reference.

    Examples:

      tradeops evidence verify evidence-2026-11.zip
      tradeops evidence verify evidence-2026-11.zip --expect 3f1c...e9 --json
      tradeops evidence verify evidence-2026-11.zip --against s3://tradeops-evidence-123456789012-eu-west-2/packs/evidence-2026-11.zip
    """
    from tradeops.reports.evidence import fetch_reference, parse_s3_object, verify

    reference, lock = None, None
    if against is not None:
        parse_s3_object(against)  # bad input before any AWS client exists
        where, data, lock = fetch_reference(context().aws, against, now=utcnow())
        reference = (where, data)
    result = verify(pack_file, expect=expect, reference=reference)
    manifest = result.manifest
    if as_json:
        print_json({"pack": str(pack_file), "ok": result.ok, "problems": result.problems,
                    "files": len(manifest.get("files") or []), "audit": manifest.get("audit"),
                    "created_at": manifest.get("created_at"), "created_by": manifest.get("created_by"),
                    "expected": expect, "against": {"url": against, **lock} if lock else None})
    elif result.ok:
        audit = manifest["audit"]
        checked = "".join([", the expected digest" if expect else "", f", the locked copy at {against}" if against
                           else ""])
        out.print(f"{pack_file}: intact ({len(manifest['files'])} files, audit records {audit['first_seq']}.."
                  f"{audit['last_seq']}, made {manifest.get('created_at')} by {manifest.get('created_by')}; "
                  f"checked against its manifest{checked})", markup=False)
    else:
        for problem in result.problems[1:]:
            err.print(f"  {problem}", markup=False)
    if not result.ok:
        more = f" (and {len(result.problems) - 1} more above)" if len(result.problems) > 1 else ""
        raise CheckFailed(f"{pack_file} failed verification: {result.problems[0]}{more}")
