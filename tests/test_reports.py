"""Reports, evidence packs and their retention, from a recorded primary-outage run folder (tests/data) and the
session's moto server (`aws_settings`): no stack, no drill. The report a real drill writes is checked in
tests/test_drills_stack.py, the incident report of a real failover in tests/test_failover_e2e.py."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support.stack import REPO, run_cli

FIXTURE = REPO / "tests" / "data" / "drill-primary-outage"
SECRETS = {"intake_token": "tok-INTAKE-5f1c2e9a7b", "primary_api_key": "pk-PRIMARY-83d0c4e1aa",
           "secondary_api_key": "sk-SECONDARY-19be77f0cc"}
BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.planted.bearer"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    env.update({"TRADEOPS_STATE_DIR": str(tmp_path / "state"), "TRADEOPS_RUNS_DIR": str(tmp_path / "runs"),
                "TRADEOPS_OPERATOR": "compliance-dana", **extra})
    return env


def _run_folder(tmp_path: Path, name: str = "20261126T155151Z-drill-primary-outage") -> Path:
    folder = tmp_path / "runs" / name
    shutil.copytree(FIXTURE, folder)
    return folder


def _settings(tmp_path: Path, **kw):
    from tradeops.runtime.platform.settings import load_settings

    return load_settings(state_dir=tmp_path / "state", runs_dir=tmp_path / "runs", **kw)


# Session-wide: built once. `processes`: WeasyPrint finds its libraries through ctypes, which runs ldconfig and gcc.
@pytest.fixture(scope="session")
def built(processes, tmp_path_factory):
    """One report built (with its PDF) from the fixture run folder, with secrets planted where they could leak:
    the settings, the environment, the journal, the events and the audit excerpt."""
    from tradeops.reports.build import build_run_report

    tmp = tmp_path_factory.mktemp("report")
    folder = _run_folder(tmp)
    journal = json.loads((folder / "journal.json").read_text())
    journal["run"][0]["output"] = {"headers": {"Authorization": BEARER}, "note": f"key {SECRETS['primary_api_key']}"}
    (folder / "journal.json").write_text(json.dumps(journal))
    events = json.loads((folder / "events.json").read_text())
    events[0]["reason"] += f" (probe sent Authorization: {BEARER})"  # the detection row of the timeline shows it
    (folder / "events.json").write_text(json.dumps(events))
    (folder / "audit.json").write_text(json.dumps([
        {"seq": 1, "kind": "execution.started", "at": "2026-11-26T15:52:03.000Z", "actor": "drill-executor",
         "identity_source": "drill", "execution_id": "x", "step_id": None,
         "data": {"api_key": SECRETS["secondary_api_key"], "token": SECRETS["intake_token"]}},
        {"seq": 2, "kind": "approval.approved", "at": "2026-11-26T15:52:04.000Z", "actor": "drill-risk",
         "identity_source": "drill", "execution_id": "x", "step_id": "toggle",
         "data": {"reason": f"automated in a drill (not human four-eyes) {SECRETS['primary_api_key']}"}}]))
    os.environ.update({"TRADEOPS_INTAKE_TOKEN": SECRETS["intake_token"]})
    try:
        settings = _settings(tmp, primary_api_key=SECRETS["primary_api_key"],
                             secondary_api_key=SECRETS["secondary_api_key"])
        assert settings.intake_token == SECRETS["intake_token"]
        report = build_run_report(folder, settings, generated_by="compliance-dana (TRADEOPS_OPERATOR)", pdf=True)
    finally:
        os.environ.pop("TRADEOPS_INTAKE_TOKEN", None)
    return report


def test_report_has_every_section_in_html_markdown_and_evidence_json(built):
    """report.html, report.md and evidence.json hold every section (SYSC 15A.5, SYSC 15A.6.1R) from the one model,
    the executive summary first; "severe but plausible" is said once, from the testing plan."""
    from tradeops.reports.model import SECTIONS

    html = (built.folder / "report.html").read_text()
    md = (built.folder / "report.md").read_text()
    evidence = json.loads((built.folder / "evidence.json").read_text())
    for section in SECTIONS:
        assert f'<section id="{section}">' in html, section
        assert section in evidence, section
    assert SECTIONS[0] == "summary" and html.index('<section id="summary">') < html.index('<section id="service">')
    headings = ["Executive summary", "The important business service", "Impact tolerance, measured as stated",
                "Engineering targets and the recovery time objective", "The scenario", "Third parties", "Timeline",
                "Customer impact", "Who executed and approved each step", "Vulnerabilities found", "Lessons learned",
                "RACI of the phase exercised", "Sign-off", "Evidence appendix"]
    for number, heading in enumerate(headings, 1):
        assert f"## {number}. {heading}" in md and f"{number}. {heading}" in html
    assert {t["metric"] for t in evidence["tolerance"]} == {"time", "customers affected", "money at risk"}
    assert evidence["scenario"]["test_type"] == "simulation" and evidence["scenario"]["assumptions"]
    scenario = html[html.index('<section id="scenario">'):html.index('<section id="third_parties">')]
    assert scenario.lower().count("severe but plausible") == 1, scenario
    assert "Why it is severe but plausible:</strong> A crashed gateway" in scenario


def test_report_figures_are_the_runs_result_json(built):
    """Detect, recover, lost, double fills and max exposure in the report are result.json's own figures."""
    result = json.loads((FIXTURE / "result.json").read_text())
    figures = result["figures"]
    evidence = json.loads((built.folder / "evidence.json").read_text())
    rows = {r["figure"]: r for r in evidence["results"]}
    for name in ("time_to_detect", "time_to_99pct_secondary", "time_back_on_primary", "orders_lost",
                 "orders_filled_twice", "max_exposure_gbp"):
        assert rows[name]["measured"] == figures[name], name
    assert evidence["headline"]["time_to_fail_over"] == figures["time_to_99pct_secondary"]
    md = (built.folder / "report.md").read_text()
    assert f"| time to detect | {figures['time_to_detect']:.3f} s | <= 1 | pass |" in md
    assert f"| orders lost | {figures['orders_lost']} | == 0 | pass |" in md
    assert f"| orders filled twice (double fills) | {figures['orders_filled_twice']} | == 0 | pass |" in md
    assert f"| maximum exposure | £{Decimal(figures['max_exposure_gbp']):,.2f} |" in md
    milestones = {r["milestone"]: r["at"] for r in evidence["timeline"] if r["milestone"]}
    assert milestones["fault injected"] == result["fault"]["started_at"]
    assert milestones["fault healed"] == result["fault"]["healed_at"]
    assert {"detected", "failed over", "back on the primary"} <= set(milestones)
    assert all(at.endswith("Z") and len(at) == 24 for at in milestones.values())  # clock.iso


def test_customer_impact_people_raci_and_evidence_appendix(built):
    """Nothing is counted from the 4-order excerpt of 105 placed: the longest wait is the load's reconciliation of
    every filled order, the orders delayed are not measured (and say why); a drill approval is marked automated and
    never human four-eyes; the RACI is the phase's from the data file; every run file is listed with its SHA-256."""
    import hashlib

    evidence = json.loads((built.folder / "evidence.json").read_text())
    impact = evidence["customer_impact"]
    summary = json.loads((FIXTURE / "load" / "summary.json").read_text())
    assert impact["longest_wait_seconds"] == summary["time_to_fill"]["max"] == 0.421
    assert impact["orders_delayed"] is None
    assert "4 of the 105 orders placed (an excerpt)" in evidence["figures"]["orders_delayed"]["source"]
    assert impact["reimbursements_owed_gbp"] == "66.77"
    people = evidence["people"]
    assert not people["human_four_eyes"] and people["automated_approvals"] == 1
    assert {(r["identity"], r["identity_source"], r["automated"]) for r in people["rows"]} == {
        ("drill-executor", "drill", True), ("drill-risk", "drill", True)}
    assert "not human four-eyes" in (built.folder / "report.html").read_text()
    assert evidence["raci"]["phase"] == "automated" and evidence["raci"]["raci"]["rows"]
    listed = {f["path"]: f["sha256"] for f in evidence["evidence"]}
    assert "report.html" not in listed and "load/summary.json" in listed and "orders.json" in listed
    for path, sha in listed.items():
        assert hashlib.sha256((built.folder / path).read_bytes()).hexdigest() == sha


def test_html_is_self_contained_with_three_inline_svg_charts_and_the_pdf_renders(built):
    """The HTML has no script and references nothing outside itself; three matplotlib SVG charts are inline,
    the throughput chart with the fault window; report.pdf is a PDF."""
    html = (built.folder / "report.html").read_text()
    for reference in ("<script", "<link", "src=", 'href="http', "url(http", "@import", "<iframe"):
        assert reference not in html, reference
    assert html.count("<svg") == 3 and "Matplotlib" in html
    assert "fault window (primary)" in html and "detected" in html
    assert (built.folder / "report.pdf").read_bytes().startswith(b"%PDF")


def test_reports_never_contain_secrets(built, tmp_path):
    """Bearer tokens and broker keys planted in the settings, environment, journal, events and audit excerpt appear
    in no file a report writes (evidence.json, report.html, report.md, report.pdf, index.html, the self-assessment)."""
    from tradeops.reports.build import write_index
    from tradeops.reports.periodic_io import self_assessment

    write_index(built.folder.parent)
    settings = _settings(built.folder.parent.parent, primary_api_key=SECRETS["primary_api_key"],
                         secondary_api_key=SECRETS["secondary_api_key"], intake_token=SECRETS["intake_token"])
    made = self_assessment(settings, since=datetime(2026, 1, 1, tzinfo=UTC), until=datetime(2027, 1, 1, tzinfo=UTC),
                           out=tmp_path / "sa", generated_by="t")
    produced = [built.folder / n for n in ("evidence.json", "report.html", "report.md")]
    produced += [built.folder.parent / "index.html", *made.files.values()]
    needles = [*SECRETS.values(), "eyJhbGciOiJIUzI1NiJ9"]
    for path in produced:
        text = path.read_text()
        for needle in needles:
            assert needle not in text, f"{needle} leaked into {path.name}"
    pdf = (built.folder / "report.pdf").read_bytes()
    assert all(n.encode() not in pdf for n in needles)
    assert "[redacted]" in (built.folder / "evidence.json").read_text()  # it was there to leak


def test_index_lists_reports_with_headline_and_recovery_trend(processes, built):
    """`report list --json` shows date, scenario, verdict, sign-off and headline figures; index.html has the
    time-to-fail-over trend per scenario."""
    runs = built.folder.parent
    second = runs / "20261127T090000Z-drill-primary-outage"
    shutil.copytree(built.folder, second)
    ev = json.loads((second / "evidence.json").read_text())
    ev["id"] = second.name
    ev["scenario"]["started_at"] = "2026-11-27T09:00:00.000Z"
    ev["headline"]["time_to_fail_over"] = 0.3
    (second / "evidence.json").write_text(json.dumps(ev))
    try:
        done = run_cli("report", "list", "--json", env=_env(runs.parent))
        assert done.returncode == 0, done.stderr
        listing = json.loads(done.stdout)
        rows = listing["reports"]
        assert [r["at"] for r in rows] == ["2026-11-27T09:00:00.000Z", "2026-11-26T15:52:00.502Z"]
        assert rows[1]["scenario"] == "primary-outage" and rows[1]["verdict"] == "not judged in full"
        assert rows[1]["signoff"] == "draft" and rows[1]["headline"]["longest_wait_seconds"] == 0.421
        assert rows[1]["headline"]["time_to_detect"] == 0.072
        index = Path(listing["index"]).read_text()
        assert "0.447 s → 0.300 s" in index and index.count("<svg") == 1
    finally:
        shutil.rmtree(second)


VULNERABILITY = ("--vulnerability", "half-open probes reopen the breaker twice", "--severity", "high",
                 "--metric", "time", "--resource", "router", "--remedy", "probe with a canary order first",
                 "--owner", "sre-team", "--why-due", "one release cycle: the canary probe exists already")


def test_annotate_records_vulnerabilities_and_lessons_and_rejects_bad_dates(processes, tmp_path):
    """`report annotate` adds a vulnerability with its severity, metric at risk, mapped resource, remedy, owner, due
    date and why, and rebuilds the report; a bad date exits 2 with one line and writes nothing; lessons and a
    vulnerability closed on a later run's evidence reach the report and the self-assessment, which lists the
    resources the service maps to."""
    folder = _run_folder(tmp_path)
    env = _env(tmp_path)
    bad = run_cli("report", "annotate", str(folder), *VULNERABILITY, "--due", "2027-02-30", env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--due must be a date" in bad.stderr
    assert not (folder / "annotations.json").exists()
    ok = run_cli("report", "annotate", str(folder), *VULNERABILITY, "--due", "2027-01-31", "--fixed-when",
                 "time_to_detect<=1", env=env)
    assert ok.returncode == 0, ok.stderr
    from tradeops.reports.build import annotate, build_run_report
    from tradeops.reports.periodic_io import self_assessment

    later = _run_folder(tmp_path, "20261203T020000Z-drill-primary-outage")
    result = json.loads((later / "result.json").read_text())
    result.update(started_at="2026-12-03T02:00:00.000Z", ended_at="2026-12-03T02:00:23.000Z")
    (later / "result.json").write_text(json.dumps(result))
    build_run_report(later, _settings(tmp_path), generated_by="compliance-dana")
    data = json.loads((folder / "annotations.json").read_text())
    data["vulnerabilities"][0]["recorded_at"] = "2026-11-27T09:00:00.000Z"  # recorded before the later run
    (folder / "annotations.json").write_text(json.dumps(data))
    annotate(folder, lesson="detection is under 100 ms", action="kept the refused-connection trip at 1",
             by="compliance-dana", at="2026-11-27T10:00:00.000Z")
    annotate(folder, close="V1", evidence=later, by="compliance-dana", at="2026-12-04T10:00:00.000Z")
    build_run_report(folder, _settings(tmp_path), generated_by="compliance-dana")
    evidence = json.loads((folder / "evidence.json").read_text())
    vulnerability = evidence["vulnerabilities"][0]
    assert {k: vulnerability[k] for k in ("id", "severity", "metric", "resource", "owner", "due", "status",
                                          "recorded_by")} == {
        "id": "V1", "severity": "high", "metric": "time", "resource": "router", "owner": "sre-team",
        "due": "2027-01-31", "status": "closed", "recorded_by": "compliance-dana (TRADEOPS_OPERATOR)"}
    assert vulnerability["evidence"]["run"] == later.name and "time_to_detect 0.072 s" in vulnerability["evidence"][
        "showed"]
    assert evidence["lessons"][0]["action"] == "kept the refused-connection trip at 1"
    assert "half-open probes reopen the breaker twice" in (folder / "report.md").read_text()
    document = self_assessment(_settings(tmp_path), since=datetime(2026, 1, 1, tzinfo=UTC),
                               until=datetime(2027, 1, 1, tzinfo=UTC), out=tmp_path / "sa",
                               generated_by="t").document
    assert document["summary"]["tests"] == 2 and document["summary"]["scenarios"] == ["primary-outage"]
    assert document["vulnerabilities"]["closed"][0]["id"] == "V1" and not document["vulnerabilities"]["open"]
    assert document["lessons"][0]["lesson"] == "detection is under 100 ms"
    assert "EvidenceBucket" in document["resources"] and "OrdersTable" in document["resources"]


def test_report_commands_reject_bad_input_with_one_line(processes, tmp_path):
    """An unknown run folder, a bad --since and a non-zip --out exit 2 with one line, no stack needed."""
    env = _env(tmp_path)
    for args, needle in ((("report", "build", "no-such-run"), "no run folder 'no-such-run'"),
                         (("report", "self-assessment", "--since", "yesterday"), "is not a date"),
                         (("evidence", "pack", "--since", "2026-01-01", "--out", str(tmp_path / "p.tar")),
                          "--out must name a .zip file")):
        done = run_cli(*args, env=env)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert needle in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "p.tar").exists()


# ---- execution quality (pure) --------------------------------------------------------------------
def test_slippage_is_signed_worse_for_the_client_and_the_brokers_are_compared():
    """A buy filled above the quote and a sell below it are positive slippage (worse for the client); the
    comparison says whether the secondary is worse."""
    from tradeops.reports.periodic import execution_quality, slippage_bps

    assert slippage_bps("BUY", Decimal("100"), Decimal("100.05")) == Decimal("5.00")
    assert slippage_bps("SELL", Decimal("100"), Decimal("99.90")) == Decimal("10.00")
    assert slippage_bps("BUY", Decimal("400"), Decimal("399.80")) == Decimal("-5.00")
    orders = json.loads((FIXTURE / "orders.json").read_text())
    quality = execution_quality(orders)
    primary, secondary = quality["brokers"]["primary"], quality["brokers"]["secondary"]
    assert primary["fills"] == 2 and secondary["fills"] == 1  # the rejected order is no fill
    assert primary["slippage_bps"]["mean"] == "7.50" and secondary["slippage_bps"]["mean"] == "-5.00"
    assert primary["latency_ms"]["max"] == 300.0 and secondary["latency_ms"]["p50"] == 200.0  # last submission
    assert quality["comparison"]["secondary_not_worse"] is True
    assert "not worse for clients" in quality["comparison"]["statement"]


# ---- evidence packs ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def packed(aws_settings, tmp_path_factory):
    """A pack of the fixture run and an audit chain of its own (five records, three in the period); the tests
    tamper with copies of it, never the pack itself."""
    from tradeops.reports.build import build_run_report
    from tradeops.reports.evidence import pack
    from tradeops.runbooks.audit import AuditLog
    from tradeops.runtime.platform.aws import Aws

    tmp_path = tmp_path_factory.mktemp("pack")
    settings = aws_settings.model_copy(update={"runs_dir": tmp_path / "runs"})
    folder = _run_folder(tmp_path)
    build_run_report(folder, settings, generated_by="t")
    aws = Aws(settings)
    log = AuditLog(aws, chain=f"pack-{uuid.uuid4().hex[:8]}")
    for i in range(5):
        log.append("step.started", execution_id="exec-1", step_id=f"s{i}", actor="ops-alice",
                   identity_source="TRADEOPS_OPERATOR", data={"i": i})
        time.sleep(0.005)  # one record per millisecond at most: the period's bounds fall between records
    records = log.entries()
    since = datetime.fromisoformat(records[1]["at"].replace("Z", "+00:00"))
    until = datetime.fromisoformat(records[2]["at"].replace("Z", "+00:00")) + timedelta(milliseconds=1)
    since = min(since, datetime(2026, 11, 26, tzinfo=UTC))
    made = pack(settings, aws, since=since, until=until, out=tmp_path / "pack.zip", created_by="compliance-dana",
                chain=log.chain)
    return made, settings, aws


def _rewrite(src: Path, dst: Path, change) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)


def test_a_fresh_pack_verifies_and_its_manifest_says_what_when_and_who(packed, tmp_path):
    """The manifest has every file's SHA-256, the audit chain head, the version, when and by whom; `evidence verify`
    exits 0 on it."""
    made, _settings, _aws = packed
    manifest = made.manifest
    names = {f["path"] for f in manifest["files"]}
    assert "audit/segment.json" in names and any(n.endswith("/report.html") for n in names)
    assert any(n.endswith("/result.json") for n in names) and any(n.endswith("/load/summary.json") for n in names)
    assert manifest["audit"]["chain_head"]["seq"] == 5 and len(manifest["audit"]["chain_head"]["sha256"]) == 64
    assert manifest["audit"]["first_seq"] == 1 and manifest["audit"]["last_seq"] == 3  # records 1..3 are in the period
    assert manifest["created_by"] == "compliance-dana" and manifest["tradeops_version"]
    assert manifest["created_at"].endswith("Z")
    done = run_cli("evidence", "verify", str(made.path), env=_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "intact" in done.stdout


def test_verify_names_the_file_after_one_byte_of_any_file_changes(packed, tmp_path):
    """Flipping one byte of any one file of the pack (each in turn, the manifest too, and a byte of the zip's own
    stored data) fails verification naming that file."""
    from tradeops.reports.evidence import verify

    made, _settings, _aws = packed
    files = [f["path"] for f in made.manifest["files"]]
    for path in files:
        tampered = tmp_path / "tampered.zip"

        def flip(name, data, path=path):
            if name != path:
                return data
            return bytes([data[0] ^ 0x01]) + data[1:] if data else b"x"

        _rewrite(made.path, tampered, flip)
        result = verify(tampered)
        assert not result.ok, path
        assert any(p.startswith(f"{path}: changed") for p in result.problems), (path, result.problems)
    # The manifest itself: one byte of who made the pack.
    _rewrite(made.path, tampered, lambda n, d: d.replace(b'"compliance-dana"', b'"compliance-dano"')
             if n == "manifest.json" else d)
    assert verify(tampered).problems == ["manifest.json: changed (its content no longer matches its own SHA-256)"]
    # One byte of the zip file itself, inside a file's stored data: the zip's CRC names the file.
    raw = bytearray(made.path.read_bytes())
    with zipfile.ZipFile(made.path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/journal.json"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0x01
    tampered.write_bytes(bytes(raw))
    result = verify(tampered)
    assert not result.ok and result.problems[0].startswith(f"{info.filename}: changed"), result.problems
    # And through the command: exit 1, naming the file on one line.
    target = next(p for p in files if p.endswith("/result.json"))
    _rewrite(made.path, tampered, lambda n, d: d.replace(b'"orders_lost": 0', b'"orders_lost": 1')
             if n == target else d)
    done = run_cli("evidence", "verify", str(tampered), env=_env(tmp_path))
    assert done.returncode == 1 and f"{target}: changed" in done.stderr and "Traceback" not in done.stderr


def test_verify_names_the_audit_record_removed_from_the_segment(packed, tmp_path):
    """Removing one audit record from the pack's segment fails verification naming the record (and the file)."""
    from tradeops.reports.evidence import verify

    made, _settings, _aws = packed

    def drop_second(name, data):
        if name != "audit/segment.json":
            return data
        records = json.loads(data)
        return json.dumps([r for r in records if r["seq"] != 2]).encode()

    tampered = tmp_path / "dropped.zip"
    _rewrite(made.path, tampered, drop_second)
    result = verify(tampered)
    assert not result.ok
    assert "audit/segment.json: audit record 2 was removed" in result.problems
    done = run_cli("evidence", "verify", str(tampered), "--json", env=_env(tmp_path))
    assert done.returncode == 1 and "audit record 2 was removed" in done.stdout + done.stderr
    # The segment re-hashed into the manifest too: the chain still names the removed record.
    with zipfile.ZipFile(tampered) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        segment = zf.read("audit/segment.json")
    import hashlib

    from tradeops.reports.evidence import manifest_digest

    for f in manifest["files"]:
        if f["path"] == "audit/segment.json":
            f["sha256"] = hashlib.sha256(segment).hexdigest()
    manifest["manifest_sha256"] = manifest_digest(manifest)
    forged = tmp_path / "forged.zip"
    _rewrite(tampered, forged, lambda n, d: json.dumps(manifest).encode() if n == "manifest.json" else d)
    assert verify(forged).problems == ["audit/segment.json: audit record 2 was removed"]


def test_an_uploaded_pack_cannot_be_deleted_or_overwritten_before_its_retention_date(packed):
    """Uploaded to the template's Object Lock bucket in compliance mode: deleting the pack's version is refused,
    with or without bypassing governance; a second put under the key is a new version and the pack's version is
    unchanged."""
    import botocore.exceptions

    from tradeops.reports.evidence import retain_until, upload

    made, _settings, aws = packed
    s3 = aws.client("s3")
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith("ut-evidence-"))
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled" and lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
    until = retain_until(datetime.now(UTC).replace(microsecond=0))
    stored = upload(aws, made.path, f"s3://{bucket}/packs/{uuid.uuid4().hex[:6]}", until=until,
                    metadata={"manifest-sha256": made.manifest_sha256})
    key, version = stored["key"], stored["version_id"]
    head = s3.head_object(Bucket=bucket, Key=key, VersionId=version)
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"] == until
    assert head["Metadata"]["manifest-sha256"] == made.manifest_sha256
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError):
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True)
    # (Shortening a compliance-mode retention is refused by S3 too, but moto 5.2 accepts it: not asserted here.)
    s3.put_object(Bucket=bucket, Key=key, Body=b"not the pack")
    kept = s3.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
    assert kept == made.path.read_bytes()
    assert zipfile.ZipFile(io.BytesIO(kept)).read("manifest.json")


def test_pack_and_upload_through_the_command_line(aws_settings, tmp_path):
    """`evidence pack --upload s3://...` prints the target first, writes the pack, stores it with Object Lock and
    says until when; a bucket without Object Lock is refused with one line (exit 1)."""
    from tradeops.runtime.platform.aws import Aws

    _run_folder(tmp_path)
    s3 = Aws(aws_settings).client("s3")
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith("ut-evidence-"))
    plain = f"ut-plain-{uuid.uuid4().hex[:6]}"
    s3.create_bucket(Bucket=plain, CreateBucketConfiguration={"LocationConstraint": aws_settings.region})
    env = _env(tmp_path, TRADEOPS_AWS_ENDPOINT_URL=aws_settings.aws_endpoint_url, TRADEOPS_NAME_PREFIX="ut",
               TRADEOPS_PARAM_PREFIX="/ut", TRADEOPS_TARGET="aws")
    out = tmp_path / "ev.zip"
    done = run_cli("evidence", "pack", "--since", "2026-11-26", "--until", "2026-11-27", "--out", str(out),
                   "--upload", f"s3://{bucket}/cli", "--chain", f"empty-{uuid.uuid4().hex[:6]}", "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout)
    assert answer["target"]["kind"] and answer["runs"] == ["20261126T155151Z-drill-primary-outage"]
    assert answer["uploaded"]["mode"] == "COMPLIANCE" and answer["uploaded"]["retain_until"].startswith("2032-")
    refused = run_cli("evidence", "pack", "--since", "2026-11-26", "--until", "2026-11-27", "--out",
                      str(tmp_path / "ev2.zip"), "--upload", f"s3://{plain}/x", "--chain", "empty-x", env=env)
    assert refused.returncode == 1 and "has no Object Lock" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "ev2.zip").exists()
    assert subprocess.run(["tradeops", "evidence", "verify", str(out)], env=env, capture_output=True).returncode == 0


def _recomputed(made, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the pack with one file edited and its manifest recomputed to match it (the file's digest and the
    manifest's own): what someone who can write the pack can make."""
    import hashlib

    from tradeops.reports.evidence import manifest_digest

    target = next(f["path"] for f in made.manifest["files"] if f["path"].endswith("/result.json"))
    with zipfile.ZipFile(made.path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        edited = zf.read(target).replace(b'"orders_lost": 0', b'"orders_lost": 1')
    for f in manifest["files"]:
        if f["path"] == target:
            f.update(sha256=hashlib.sha256(edited).hexdigest(), bytes=len(edited))
    manifest["manifest_sha256"] = manifest_digest(manifest)
    forged = tmp_path / "recomputed.zip"
    _rewrite(made.path, forged, lambda n, d: edited if n == target else (
        (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode() if n == "manifest.json" else d))
    return forged, target


def test_a_pack_whose_manifest_was_recomputed_fails_against_the_digest_and_the_locked_copy(packed, tmp_path):
    """A pack with an edited file and a manifest recomputed to match passes the check against its own manifest, and
    fails `evidence verify --expect` (the manifest digest printed when it was made) and `--against` the copy kept
    under Object Lock, naming the manifest and the file; the pack as made passes both. A copy that is not locked is
    no reference (exit 1), and a malformed digest or URL is bad input (exit 2)."""
    from tradeops.reports.evidence import retain_until, upload, verify
    from tradeops.runtime.platform.aws import Aws

    made, settings, aws = packed
    forged, target = _recomputed(made, tmp_path)
    assert verify(forged).ok  # its own manifest cannot tell
    s3 = aws.client("s3")
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith("ut-evidence-"))
    stored = upload(aws, made.path, f"s3://{bucket}/ref-{uuid.uuid4().hex[:6]}",
                    until=retain_until(datetime.now(UTC).replace(microsecond=0)), metadata={})
    locked = f"s3://{bucket}/{stored['key']}"
    env = _env(tmp_path, TRADEOPS_AWS_ENDPOINT_URL=settings.aws_endpoint_url, TRADEOPS_NAME_PREFIX="ut",
               TRADEOPS_PARAM_PREFIX="/ut")
    expected = run_cli("evidence", "verify", str(forged), "--expect", made.manifest_sha256, env=env)
    assert expected.returncode == 1 and "Traceback" not in expected.stderr
    assert "manifest.json: its SHA-256 is" in expected.stderr and f"not the expected {made.manifest_sha256[:16]}" \
        in expected.stderr
    against = run_cli("evidence", "verify", str(forged), "--against", locked, "--json", env=env)
    assert against.returncode == 1, against.stdout + against.stderr
    problems = json.loads(against.stdout)["problems"]
    assert problems[0].startswith(f"{target}: differs from the copy at {locked}"), problems
    good = run_cli("evidence", "verify", str(made.path), "--expect", made.manifest_sha256, "--against", locked, env=env)
    assert good.returncode == 0, good.stderr
    assert "checked against its manifest, the expected digest, the locked copy at" in good.stdout
    plain = f"ut-plain-{uuid.uuid4().hex[:6]}"
    s3 = Aws(settings).client("s3")
    s3.create_bucket(Bucket=plain, CreateBucketConfiguration={"LocationConstraint": settings.region})
    s3.put_object(Bucket=plain, Key="pack.zip", Body=made.path.read_bytes())
    unlocked = run_cli("evidence", "verify", str(made.path), "--against", f"s3://{plain}/pack.zip", env=env)
    assert unlocked.returncode == 1 and "is not under Object Lock in compliance mode" in unlocked.stderr
    for flag, value, needle in (("--expect", "abc", "--expect must be a SHA-256"),
                                ("--against", f"s3://{bucket}", "--against must be s3://BUCKET/KEY")):
        bad = run_cli("evidence", "verify", str(made.path), flag, value, env=env)
        assert bad.returncode == 2 and needle in bad.stderr and bad.stderr.count("\n") == 1


def test_the_headless_browser_check_sees_a_failed_request(processes, tmp_path):
    """The Chromium harness the drill report's check uses records a page's failed request (so its "none failed"
    means something)."""
    from tests.support.browser import load_page

    page_file = tmp_path / "page.html"
    page_file.write_text('<!DOCTYPE html><html><body><img src="missing.png"><p>x</p></body></html>')
    page = load_page(page_file, tmp_path / "shot.png", user_data_dir=tmp_path / "chromium", height=400)
    assert page.loaded and len(page.requests) == 2
    assert [f.get("errorText") for f in page.failed] == ["net::ERR_FILE_NOT_FOUND"]
    assert (tmp_path / "shot.png").read_bytes().startswith(b"\x89PNG")


def test_an_incident_is_detected_at_the_outage_its_runbook_answered_not_an_earlier_healed_one():
    """Breaker openings of an earlier, healed episode in the look-back window are not the incident's detection."""
    from tradeops.reports.model import incident_evidence

    events = [{"at": "2026-11-26T09:00:00.000Z", "kind": "breaker_opened", "provider": "primary", "source": "w1"},
              {"at": "2026-11-26T09:01:00.000Z", "kind": "breaker_closed", "provider": "primary", "source": "w1"},
              {"at": "2026-11-26T09:05:00.000Z", "kind": "breaker_opened", "provider": "primary", "source": "w2"}]
    history = {"execution": {"execution_id": "failover-1", "runbook": "failover", "executor": "ops-alice",
                             "created_at": "2026-11-26T09:06:00.000Z", "finished_at": "2026-11-26T09:10:00.000Z",
                             "status": "completed"},
               "timeline": [{"kind": "execution.started", "at": "2026-11-26T09:06:00.000Z", "actor": "ops-alice",
                             "identity_source": "iam-user"},
                            {"kind": "approval.approved", "at": "2026-11-26T09:07:00.000Z", "actor": "ops-bob",
                             "identity_source": "iam-user", "step_id": "toggle-to-secondary"},
                            {"kind": "execution.finished", "at": "2026-11-26T09:10:00.000Z", "actor": "ops-alice",
                             "identity_source": "iam-user", "data": {"status": "completed"}}]}
    from tradeops.reports.build import catalogue

    model = incident_evidence(history=history, orders=[], events=events, reimbursements=[], exposure=[],
                              catalogue=catalogue(), tolerance_seconds=1800, generated_at="2026-11-26T10:00:00.000Z",
                              generated_by="t", version="0")
    detected = next(r for r in model["timeline"] if r["milestone"] == "detected")
    assert detected["at"] == "2026-11-26T09:05:00.000Z"
    assert model["figures"]["incident_duration_seconds"]["value"] == 300.0 and model["results"][0]["passed"]
    assert model["people"]["human_four_eyes"] and model["scenario"]["test_type"] == "live incident"
