"""Signing reports and self-assessments off (`tradeops report sign|signatures`): the rules as pure decisions, then
the command against the session's moto server: the signature is an audit-log record binding the identity, the time
and the digest of exactly what was signed; the approver holds the roster's approving role and is not the reviewer;
a document that changes loses its signatures; every self-assessment version is kept, under Object Lock when
uploaded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.stack import REPO

FIXTURE = REPO / "tests" / "data" / "drill-primary-outage"
POLICY_ROLES = {"reviewer_roles": ["compliance", "risk"], "approver_roles": ["smf24", "board-delegate"]}
ROSTER = {"compliance-dana": ["compliance"], "risk-rita": ["risk", "smf24"], "smf-sam": ["smf24"],
          "ops-olly": ["ops-manager"]}


def _policy():
    from tradeops.reports.signoff import Policy

    return Policy.from_catalogue({"signoff": POLICY_ROLES})


def _sig(capacity, identity, roles, digest="d" * 64, **kw):
    from tradeops.reports.signoff import Signature

    return Signature(document="drill:r", sha256=digest, capacity=capacity, identity=identity, identity_source="test",
                     roles=tuple(roles), comment="checked", at=kw.pop("at", "2026-12-01T10:00:00.000Z"), **kw)


# ---- the rules (pure) ----------------------------------------------------------------------------
def test_who_may_sign_what():
    """A reviewer needs a reviewing role, an approver an approving one (named in the refusal); the approver approves
    only a reviewed version, is not its reviewer (whatever the case of the name), and approves it once; a drill
    identity never signs; a signature needs a comment."""
    from tradeops.reports.signoff import check_signature
    from tradeops.runtime.platform.errors import BadInput, Refused

    policy, digest = _policy(), "d" * 64

    def sign(capacity, identity, held, existing=(), comment="figures checked", source="test"):
        check_signature(policy, digest=digest, capacity=capacity, identity=identity, source=source, held=held,
                        comment=comment, existing=list(existing))

    with pytest.raises(Refused, match="ops-olly has ops-manager; signing as reviewer needs one of compliance, risk"):
        sign("reviewer", "ops-olly", {"ops-manager"})
    with pytest.raises(Refused, match="no review yet"):
        sign("approver", "smf-sam", {"smf24"})
    review = _sig("reviewer", "risk-rita", ["risk", "smf24"])
    with pytest.raises(Refused, match="compliance-dana has compliance; signing as approver needs one of "
                                      "board-delegate, smf24"):
        sign("approver", "compliance-dana", {"compliance"}, [review])
    with pytest.raises(Refused, match="Risk-Rita has already signed this version as reviewer"):
        sign("approver", "Risk-Rita", {"risk", "smf24"}, [review])
    sign("approver", "smf-sam", {"smf24"}, [review])
    approval = _sig("approver", "smf-sam", ["smf24"], at="2026-12-01T11:00:00.000Z")
    with pytest.raises(Refused, match="approved already by smf-sam"):
        sign("approver", "board-bea", {"board-delegate"}, [review, approval])
    with pytest.raises(Refused, match="smf-sam has already signed this version as approver"):
        sign("reviewer", "smf-sam", {"smf24", "risk"}, [review, approval])
    sign("approver", "smf-sam", {"smf24"}, [review, _sig("approver", "smf-sam", ["smf24"], digest="e" * 64)])
    with pytest.raises(Refused, match="drill identity"):
        sign("reviewer", "drill-risk", {"risk"}, source="drill")
    with pytest.raises(BadInput, match="--comment is required"):
        sign("reviewer", "compliance-dana", {"compliance"}, comment=" ")
    with pytest.raises(BadInput, match="--as must be reviewer or approver"):
        sign("board", "compliance-dana", {"compliance"})


def test_where_a_document_stands():
    """Reviewed and approved on its digest: approved; a signature on another digest, an edited record, an approval by
    the reviewer, or an approval of an unreviewed version is void and says why."""
    from tradeops.reports.signoff import standing

    policy, digest = _policy(), "d" * 64
    review = _sig("reviewer", "compliance-dana", ["compliance"])
    approval = _sig("approver", "smf-sam", ["smf24"], at="2026-12-01T11:00:00.000Z")
    assert standing(policy, digest, [])["state"] == "draft"
    assert standing(policy, digest, [review])["state"] == "reviewed"
    assert standing(policy, digest, [review, approval])["state"] == "approved"
    moved = standing(policy, "e" * 64, [review, approval])
    assert moved["state"] == "draft" and {v["void"] for v in moved["void"]} == {
        "the document changed after it was signed"}
    edited = standing(policy, digest, [review, _sig("approver", "smf-sam", ["smf24"], intact=False,
                                                     at="2026-12-01T11:00:00.000Z")])
    assert edited["state"] == "reviewed" and "edited" in edited["void"][0]["void"]
    self_approved = standing(policy, digest, [review, _sig("approver", "COMPLIANCE-DANA", ["smf24"],
                                                            at="2026-12-01T11:00:00.000Z")])
    assert self_approved["state"] == "reviewed" and "one identity signs a version once" in self_approved["void"][0][
        "void"]
    unreviewed = standing(policy, digest, [approval])
    assert unreviewed["state"] == "draft" and "someone else reviewed" in unreviewed["void"][0]["void"]


@given(st.lists(st.tuples(st.sampled_from(["reviewer", "approver"]), st.sampled_from(["ann", "ANN", "bob", "cy"]),
                          st.sampled_from([("risk",), ("smf24",), ("risk", "smf24"), ()])), max_size=6))
def test_an_approved_document_always_has_a_reviewer_and_a_different_approver_holding_their_roles(signed):
    """Whatever signatures the audit log holds, a document stands approved only when a reviewer holding a reviewing
    role and a different identity holding an approving role signed its digest."""
    from tradeops.reports.signoff import standing

    policy = _policy()
    signatures = [_sig(c, who, roles, at=f"2026-12-01T10:00:0{i}.000Z") for i, (c, who, roles) in enumerate(signed)]
    state = standing(policy, "d" * 64, signatures)
    if state["state"] == "approved":
        reviewers = {s["identity"].lower() for s in state["signatures"] if s["as"] == "reviewer"}
        approvers = {s["identity"].lower() for s in state["signatures"] if s["as"] == "approver"}
        assert reviewers and approvers and not reviewers & approvers
        assert all(set(s["roles"]) & policy.roles_for(s["as"]) for s in state["signatures"])


# ---- the command, against the session's moto server ---------------------------------------------------
@pytest.fixture
def signing(aws_settings, tmp_path):
    """A private roster (its own parameter prefix), a runs folder with the recorded run's report under a name of
    its own (the session's audit chain is shared), and the environment `tradeops` runs with."""
    from tradeops.reports.build import build_run_report
    from tradeops.runbooks.testing import install_roster, write_operators
    from tradeops.runtime.platform.aws import Aws

    prefix = f"/so{uuid.uuid4().hex[:8]}"
    settings = aws_settings.model_copy(update={"param_prefix": prefix, "runs_dir": tmp_path / "runs"})
    aws = Aws(settings)
    install_roster(aws, write_operators(tmp_path / "operators.yaml", ROSTER))
    run = tmp_path / "runs" / f"20261126T155151Z-drill-primary-outage-{uuid.uuid4().hex[:6]}"
    shutil.copytree(FIXTURE, run)
    build_run_report(run, settings, generated_by="t")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    env.update({"TRADEOPS_AWS_ENDPOINT_URL": settings.aws_endpoint_url, "TRADEOPS_NAME_PREFIX": settings.name_prefix,
                "TRADEOPS_PARAM_PREFIX": prefix, "TRADEOPS_STATE_DIR": str(tmp_path / "state"),
                "TRADEOPS_RUNS_DIR": str(tmp_path / "runs")})
    return {"settings": settings, "aws": aws, "env": env, "run": run, "tmp": tmp_path}


def _tradeops(signing, *args, who="compliance-dana"):
    return subprocess.run(["tradeops", *args], env=dict(signing["env"], TRADEOPS_OPERATOR=who), capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def _sign(signing, target, who, capacity, comment="checked"):
    """A signature recorded as `report sign` records it (its rules are the command's test above), without a process."""
    from tradeops.reports.signoff_io import find_document, record_signature
    from tradeops.runbooks.identity import Identity
    from tradeops.runbooks.roster import Roster

    document = find_document(signing["settings"], target)
    return record_signature(signing["aws"], document, capacity=capacity, identity=Identity(who, "TRADEOPS_OPERATOR"),
                            roster=Roster(signing["aws"]).require(), comment=comment)


def _signed_records(signing, document):
    from tradeops.runbooks.audit import AuditLog

    return [r for r in AuditLog(signing["aws"]).timeline(document)[0] if r["kind"] == "report.signed"]


def test_a_report_is_reviewed_then_approved_by_someone_else_holding_the_approving_role(signing):
    """The approver cannot approve before a review, cannot be the reviewer, must hold smf24 or board-delegate in the
    roster, and signs once; each refusal is one line with exit 1 and writes no record. The signatures are audit
    records binding the identity, its roster roles, the time and the report's digest, and the report shows them."""
    run = signing["run"]
    document = f"drill:{run.name}"
    for who, args, needle in (
            ("smf-sam", ("--as", "approver"), "has no review yet"),
            ("risk-rita", ("--as", "reviewer"), None),
            ("risk-rita", ("--as", "approver"), "risk-rita has already signed this version as reviewer"),
            ("ops-olly", ("--as", "approver"), "ops-olly has ops-manager; signing as approver needs one of "
                                               "board-delegate, smf24"),
            ("smf-sam", ("--as", "approver"), None),
            ("smf-sam", ("--as", "approver"), "smf-sam has already signed this version as approver")):
        before = len(_signed_records(signing, document))
        done = _tradeops(signing, "report", "sign", run.name, *args, "--comment", "figures checked against the run",
                         who=who)
        if needle is None:
            assert done.returncode == 0, done.stdout + done.stderr
            assert len(_signed_records(signing, document)) == before + 1
        else:
            assert done.returncode == 1, (who, args, done.stdout, done.stderr)
            assert needle in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
            assert len(_signed_records(signing, document)) == before
    from tradeops.reports.signoff import document_digest

    evidence = json.loads((run / "evidence.json").read_text())
    records = _signed_records(signing, document)
    assert [(r["actor"], r["data"]["as"], r["data"]["roles"]) for r in records] == [
        ("risk-rita", "reviewer", ["risk", "smf24"]), ("smf-sam", "approver", ["smf24"])]
    assert {r["data"]["sha256"] for r in records} == {document_digest(evidence), evidence["document"]["sha256"]}
    assert all(r["identity_source"] == "TRADEOPS_OPERATOR" and r["at"].endswith("Z") for r in records)
    assert evidence["signoff"]["state"] == "approved"
    html = (run / "report.html").read_text()
    assert 'Sign-off: <span class="state approved">approved</span>' in html and "smf-sam" in html
    shown = json.loads(_tradeops(signing, "report", "signatures", run.name, "--json").stdout)
    assert shown["signoff"]["state"] == "approved" and len(shown["signoff"]["signatures"]) == 2
    assert "draft until it is reviewed" not in html


def test_editing_a_signed_reports_evidence_voids_its_signatures(signing):
    """After review and approval, a changed file of the run voids both signatures (the report no longer matches its
    evidence) and signing is refused until it is rebuilt; rebuilt, the report has a new digest and is a draft again,
    its old signatures shown void, and it can be signed anew."""
    run = signing["run"]
    _sign(signing, str(run), "compliance-dana", "reviewer")
    _sign(signing, str(run), "smf-sam", "approver")
    orders = json.loads((run / "orders.json").read_text())
    orders[0]["fill_price"] = "100.50"
    (run / "orders.json").write_text(json.dumps(orders))
    state = json.loads(_tradeops(signing, "report", "signatures", run.name, "--json").stdout)["signoff"]
    assert state["state"] == "draft" and not state["signatures"] and len(state["void"]) == 2
    assert all("changed since it was built (orders.json)" in v["void"] for v in state["void"])
    refused = _tradeops(signing, "report", "sign", run.name, "--as", "reviewer", "--comment", "again")
    assert refused.returncode == 1 and "changed since it was built (orders.json)" in refused.stderr
    rebuilt = _tradeops(signing, "report", "build", run.name, "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["signoff"] == "draft"
    evidence = json.loads((run / "evidence.json").read_text())
    assert {v["void"] for v in evidence["signoff"]["void"]} == {"the document changed after it was signed"}
    _sign(signing, str(run), "compliance-dana", "reviewer", comment="re-reviewed")
    evidence["figures"]["time_to_detect"]["value"] = 0.01  # an edit of the report itself
    (run / "evidence.json").write_text(json.dumps(evidence))
    state = json.loads(_tradeops(signing, "report", "signatures", run.name, "--json").stdout)["signoff"]
    assert state["state"] == "draft" and not state["signatures"] and state["changed"] == ["evidence.json"]
    assert any(v["comment"] == "re-reviewed" and "changed" in v["void"] for v in state["void"])


def test_signing_what_does_not_exist_is_bad_input_and_writes_nothing(signing):
    """A target that is no report exits 2 with one line and appends nothing to the audit log."""
    from tradeops.runbooks.audit import AuditLog

    count = len(AuditLog(signing["aws"]).stored())
    for target in ("no-such-run", str(signing["tmp"])):
        done = _tradeops(signing, "report", "sign", target, "--as", "reviewer", "--comment", "checked")
        assert done.returncode == 2, done.stdout + done.stderr
        assert "nothing to sign" in done.stderr and done.stderr.count("\n") == 1
    assert len(AuditLog(signing["aws"]).stored()) == count


def test_every_self_assessment_version_is_kept_signed_and_locked_when_uploaded(signing):
    """Compiled with --upload, a version's files go to the evidence bucket under Object Lock in compliance mode for
    six years; compiled again unchanged, nothing new is written or stored; once a run is added the record says
    something new and becomes version 2, version 1 and its signature stay as they were, and version 2 is a draft."""
    from tradeops.runtime.platform.aws import Aws

    s3 = Aws(signing["settings"]).client("s3")
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith("ut-evidence-"))
    prefix = f"sa-{uuid.uuid4().hex[:6]}"
    args = ("report", "self-assessment", "--since", "2026-01-01", "--until", "2027-01-01", "--json")
    first = _tradeops(signing, *args, "--upload", f"s3://{bucket}/{prefix}")
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    assert made["version"] == 1 and made["new_version"] and len(made["uploaded"]) == 3
    stored = made["uploaded"][0]
    head = s3.head_object(Bucket=bucket, Key=stored["key"], VersionId=stored["version_id"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=365 * 6 - 2)
    assert stored["key"].startswith(f"{prefix}/") and "/v1/self-assessment" in stored["key"]
    from tradeops.reports.periodic_io import self_assessment
    from tradeops.reports.signoff_io import read_signatures

    v1 = Path(made["files"]["self-assessment.json"])
    _sign(signing, str(v1.parent), "compliance-dana", "reviewer", comment="read it")
    kept = v1.read_bytes()
    document = made["document"]["id"]

    def compile_again(**kw):
        return self_assessment(signing["settings"], since=datetime(2026, 1, 1, tzinfo=UTC),
                               until=datetime(2027, 1, 1, tzinfo=UTC), out=None, generated_by="t",
                               signatures=read_signatures(signing["aws"], document), **kw)

    stored_again: list = []
    same = compile_again(upload=lambda path, version: stored_again.append(path))
    assert same.version == 1 and not same.new and not stored_again
    assert same.document["signoff"]["state"] == "reviewed"
    later = signing["run"].with_name("20261201T020000Z-drill-primary-outage-later")
    shutil.copytree(signing["run"], later)
    evidence = json.loads((later / "evidence.json").read_text())
    evidence.update(id=later.name)
    evidence["scenario"]["started_at"] = "2026-12-01T02:00:00.000Z"
    (later / "evidence.json").write_text(json.dumps(evidence))
    second = compile_again()
    assert second.version == 2 and second.new and second.document["summary"]["tests"] == 2
    assert second.document["signoff"]["state"] == "draft" and v1.read_bytes() == kept
    state = json.loads(_tradeops(signing, "report", "signatures", str(v1.parent), "--json").stdout)
    assert state["version"] == 1 and state["signoff"]["state"] == "reviewed"
    rendered = (v1.parent / "self-assessment.html").read_text()
    assert 'Sign-off: <span class="state reviewed">reviewed</span>' in rendered
