"""The reimbursement ledger against a real DynamoDB API (moto server): once per order, rules, CSV, CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import ROUND_UP, Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradeops.commands.reimbursements import reimbursements_app
from tradeops.runbooks.testing import install_roster, write_operators
from tradeops.runtime.liability.ledger import NOTHING_DUE, SYSTEM_REQUESTER, Ledger, write_csv
from tradeops.runtime.liability.reimbursement import (
    APPROVED,
    PENDING_APPROVAL,
    REJECTED,
    ApprovalRefused,
    new_reimbursement,
)
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import BadInput, NotFound
from tradeops.runtime.platform.settings import Settings

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
FINANCE = {"finance"}


@pytest.fixture(scope="module")
def ledger(aws_settings: Settings) -> Ledger:
    return Ledger(Aws(aws_settings))


def filled(ledger_id: str, *, side: str = "BUY", quote: str = "100.00", fill: str = "101.00", qty: int = 10,
           waited: float = 42.5, **extra: object) -> dict:
    """A FILLED order as the orders table holds it (plain values, as OrderStore reads it)."""
    return {"order_id": ledger_id, "account_id": "acc-1", "symbol": "SYM1", "side": side, "quantity": qty,
            "order_type": "MARKET", "quote_price": Decimal(quote), "fill_price": Decimal(fill),
            "placed_at": (T0).isoformat(), "filled_at": (T0 + timedelta(seconds=waited)).isoformat(),
            "status": "FILLED", "synthetic": False, "provider": "primary", "filled_quantity": qty, **extra}


def oid(name: str = "led") -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


def expected_amount(side: str, quote: str, fill: str, qty: int) -> Decimal:
    """The formula, written out independently: adverse difference x quantity, rounded up to the penny."""
    diff = Decimal(fill) - Decimal(quote) if side == "BUY" else Decimal(quote) - Decimal(fill)
    return max(Decimal(0), diff * qty).quantize(Decimal("0.01"), rounding=ROUND_UP)


def test_fill_creates_one_entry_and_a_replay_creates_none(ledger: Ledger):
    """A fill creates exactly one entry; replaying the same fill changes nothing (no second payment)."""
    order = filled(oid())
    entry, created = ledger.record_fill(order)
    assert created and entry.amount == Decimal("10.00")
    first = ledger.require(order["order_id"])
    for _ in range(3):
        _, again = ledger.record_fill(order, now=T0 + timedelta(hours=1))
        assert not again
    assert ledger.require(order["order_id"]) == first
    assert first["version"] == 1 and first["requested_by"] == SYSTEM_REQUESTER


def test_concurrent_replays_create_exactly_one_entry(ledger: Ledger):
    """Many copies of one fill event racing each other still produce one entry."""
    order = filled(oid(), fill="100.50", qty=3)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: ledger.record_fill(order)[1], range(8)))
    assert results.count(True) == 1
    assert ledger.require(order["order_id"])["amount"] == Decimal("1.50")


@pytest.mark.parametrize(("side", "quote", "fill", "qty"), [
    ("BUY", "100.00", "100.333", 3),      # 0.999 -> 1.00: rounded up, in the customer's favour
    ("SELL", "100.00", "99.991", 7),      # 0.063 -> 0.07
    ("BUY", "12.3456", "12.3457", 1),     # 0.0001 -> 0.01
    ("SELL", "250.10", "240.05", 120),    # 1206.00 exactly
])
def test_amount_is_the_formula_rounded_up_to_the_penny(ledger: Ledger, side, quote, fill, qty):
    """The stored amount equals adverse difference x quantity rounded up to the penny, stored exactly (GBP)."""
    order = filled(oid(), side=side, quote=quote, fill=fill, qty=qty)
    ledger.record_fill(order)
    stored = ledger.require(order["order_id"])
    assert stored["amount"] == expected_amount(side, quote, fill, qty)
    assert stored["currency"] == "GBP"
    assert stored["fill_price"] == Decimal(fill) and stored["quote_price"] == Decimal(quote)
    assert stored["waited_seconds"] == Decimal("42.500")


@pytest.mark.parametrize(("side", "fill"), [("BUY", "99.00"), ("BUY", "100.00"), ("SELL", "101.00")])
def test_fill_at_or_better_than_the_quote_is_recorded_as_nothing_due(ledger: Ledger, side, fill):
    """A fill at or better than the quote is recorded once, with amount 0 and status NOTHING_DUE."""
    order = filled(oid(), side=side, fill=fill)
    entry, created = ledger.record_fill(order)
    assert created and entry.status == NOTHING_DUE
    stored = ledger.require(order["order_id"])
    assert stored["amount"] == 0 and stored["status"] == NOTHING_DUE
    with pytest.raises(ApprovalRefused):
        ledger.approve(order["order_id"], approver="fiona", roles=FINANCE)


@pytest.mark.parametrize(("fill", "status", "required"), [
    ("105.00", APPROVED, 0),           # 50.00: at the auto-approve limit
    ("105.01", PENDING_APPROVAL, 1),   # 50.10
    ("200.00", PENDING_APPROVAL, 1),   # 1000.00: at the dual-approval limit
    ("200.01", PENDING_APPROVAL, 2),   # 1000.10
])
def test_limits_decide_how_many_approvals_an_entry_needs(ledger: Ledger, fill, status, required):
    """Up to 50 GBP is approved automatically; above, one finance approval; above 1000 GBP, two."""
    order = filled(oid(), fill=fill)
    ledger.record_fill(order)
    stored = ledger.require(order["order_id"])
    assert (stored["status"], stored["required_approvals"]) == (status, required)
    if status == APPROVED:
        assert [a["approver"] for a in stored["approvals"]] == ["auto"]


def test_single_approval_needs_the_finance_role(ledger: Ledger):
    """An approver without the finance role is refused; a finance approver approves; then it is decided."""
    order = filled(oid(), fill="110.00")
    ledger.record_fill(order)
    with pytest.raises(ApprovalRefused, match="finance"):
        ledger.approve(order["order_id"], approver="hank", roles={"ops-manager"})
    entry = ledger.approve(order["order_id"], approver="fiona", roles=FINANCE, source="TRADEOPS_OPERATOR")
    assert entry["status"] == APPROVED and entry["version"] == 2
    assert [(a["approver"], a["source"]) for a in entry["approvals"]] == [("fiona", "TRADEOPS_OPERATOR")]
    with pytest.raises(ApprovalRefused, match="already APPROVED"):
        ledger.approve(order["order_id"], approver="gary", roles=FINANCE)


def test_dual_approval_needs_two_distinct_approvers(ledger: Ledger):
    """Above the second limit one approval is not enough, the same person cannot approve twice (any spelling)."""
    order = filled(oid(), fill="300.00")
    ledger.record_fill(order)
    entry = ledger.approve(order["order_id"], approver="fiona", roles=FINANCE)
    assert entry["status"] == PENDING_APPROVAL and len(entry["approvals"]) == 1
    for again in ("fiona", " Fiona "):
        with pytest.raises(ApprovalRefused, match="already approved"):
            ledger.approve(order["order_id"], approver=again, roles=FINANCE)
    entry = ledger.approve(order["order_id"], approver="gary", roles=FINANCE)
    assert entry["status"] == APPROVED
    assert [a["approver"] for a in entry["approvals"]] == ["fiona", "gary"]


def test_the_requester_cannot_approve_their_own_request(ledger: Ledger, aws_settings: Settings):
    """A reimbursement requested by a person can be approved by others only, never by that person."""
    r = new_reimbursement(order_id=oid("manual"), account_id="acc-9", symbol="SYM2", side="SELL", quantity=100,
                          quote_price=Decimal("50.00"), fill_price=Decimal("30.00"), placed_at=T0,
                          filled_at=T0 + timedelta(minutes=5), requested_by="gary",
                          auto_approve=aws_settings.reimburse_auto_approve,
                          dual_approval=aws_settings.reimburse_dual_approval, now=T0)
    assert ledger.create(r) and not ledger.create(r)
    with pytest.raises(ApprovalRefused, match="requested"):
        ledger.approve(r.order_id, approver="GARY", roles=FINANCE)
    ledger.approve(r.order_id, approver="fiona", roles=FINANCE)
    assert ledger.approve(r.order_id, approver="ivan", roles=FINANCE)["status"] == APPROVED


def test_concurrent_approvals_by_one_person_count_once(ledger: Ledger):
    """Racing approvals by the same person: exactly one is stored (the write is conditional on the version)."""
    order = filled(oid(), fill="300.00")
    ledger.record_fill(order)

    def attempt(_: int) -> str:
        try:
            ledger.approve(order["order_id"], approver="fiona", roles=FINANCE)
            return "ok"
        except ApprovalRefused:
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert outcomes.count("ok") == 1
    entry = ledger.require(order["order_id"])
    assert [a["approver"] for a in entry["approvals"]] == ["fiona"] and entry["status"] == PENDING_APPROVAL


def test_concurrent_approvals_by_two_people_are_both_kept(ledger: Ledger):
    """Two approvers racing each other: neither approval is lost, and the entry ends APPROVED."""
    order = filled(oid(), fill="300.00")
    ledger.record_fill(order)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda who: ledger.approve(order["order_id"], approver=who, roles=FINANCE), ["fiona", "gary"]))
    entry = ledger.require(order["order_id"])
    assert sorted(a["approver"] for a in entry["approvals"]) == ["fiona", "gary"]
    assert entry["status"] == APPROVED and entry["version"] == 3


def test_reject_records_who_and_why_and_ends_the_entry(ledger: Ledger):
    """A rejection needs the finance role and a reason; afterwards nobody can approve the entry."""
    order = filled(oid(), fill="120.00")
    ledger.record_fill(order)
    with pytest.raises(BadInput, match="reason"):
        ledger.reject(order["order_id"], approver="fiona", roles=FINANCE, reason="  ")
    entry = ledger.reject(order["order_id"], approver="fiona", roles=FINANCE, reason="duplicate complaint")
    assert (entry["status"], entry["rejected_by"], entry["rejection_reason"]) == (REJECTED, "fiona",
                                                                                 "duplicate complaint")
    with pytest.raises(ApprovalRefused):
        ledger.approve(order["order_id"], approver="gary", roles=FINANCE)


def test_unknown_entries_and_bad_fills_are_refused(ledger: Ledger):
    """Deciding an unknown entry is NotFound; a synthetic or unfilled order never gets an entry."""
    with pytest.raises(NotFound):
        ledger.approve(oid("nope"), approver="fiona", roles=FINANCE)
    with pytest.raises(BadInput, match="synthetic"):
        ledger.record_fill(filled(oid(), synthetic=True))
    with pytest.raises(BadInput, match="not FILLED"):
        ledger.record_fill({**filled(oid()), "status": "SUBMITTING"})
    with pytest.raises(BadInput, match="fill_price"):
        ledger.record_fill({**filled(oid()), "fill_price": None})


def test_entries_filter_by_status(ledger: Ledger):
    """Listing by status returns only entries in those statuses; an unknown status is bad input."""
    pending, auto = filled(oid(), fill="120.00"), filled(oid(), fill="100.10")
    ledger.record_fill(pending)
    ledger.record_fill(auto)
    listed = {e["order_id"]: e["status"] for e in ledger.entries([PENDING_APPROVAL])}
    assert pending["order_id"] in listed and auto["order_id"] not in listed
    assert set(listed.values()) == {PENDING_APPROVAL}
    with pytest.raises(BadInput, match="unknown status"):
        list(ledger.entries(["PAID"]))


def test_csv_export_has_one_row_per_entry_and_defuses_formulas(ledger: Ledger):
    """The CSV has the header and one row per entry, money as exact decimals, formula-looking text defused."""
    order = filled(oid(), fill="120.00")
    ledger.record_fill(order)
    ledger.reject(order["order_id"], approver="fiona", roles=FINANCE, reason="=HYPERLINK(\"http://x\")")
    buf = io.StringIO()
    assert write_csv([ledger.require(order["order_id"])], buf) == 1
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert len(rows) == 1
    row = rows[0]
    assert (row["order_id"], row["amount"], row["currency"], row["status"]) == (order["order_id"], "200.00", "GBP",
                                                                                 REJECTED)
    assert row["rejection_reason"].startswith("'=")


# ---- the reimbursements commands ---------------------------------------------------------------


@pytest.fixture()
def cli_env(aws_settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The CLI against the session's emulator, with a roster of its own (a private parameter prefix)."""
    prefix = f"/ldg{uuid.uuid4().hex[:8]}"
    roster = write_operators(tmp_path / "operators.yaml",
                             {"fiona": ["finance"], "gary": ["finance"], "hank": ["ops-manager"]})
    install_roster(Aws(aws_settings.model_copy(update={"param_prefix": prefix})), roster)
    return {"TRADEOPS_AWS_ENDPOINT_URL": aws_settings.aws_endpoint_url or "", "TRADEOPS_NAME_PREFIX": "ut",
            "TRADEOPS_PARAM_PREFIX": prefix, "TRADEOPS_STACK_NAME": "ut", "TRADEOPS_STATE_DIR": str(tmp_path),
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def test_cli_approves_as_the_operator_with_their_roles(ledger: Ledger, cli_env: dict[str, str]):
    """`reimbursements approve` acts as TRADEOPS_OPERATOR with the roles the shared roster gives it."""
    order = filled(oid(), fill="300.00")
    ledger.record_fill(order)
    runner = CliRunner()
    refused = runner.invoke(reimbursements_app, ["approve", order["order_id"], "--yes"],
                            env={**cli_env, "TRADEOPS_OPERATOR": "hank"})
    assert isinstance(refused.exception, ApprovalRefused)
    first = runner.invoke(reimbursements_app, ["approve", order["order_id"], "--json", "--yes"],
                          env={**cli_env, "TRADEOPS_OPERATOR": "fiona"})
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["status"] == PENDING_APPROVAL
    second = runner.invoke(reimbursements_app, ["approve", order["order_id"], "-y"],
                           env={**cli_env, "TRADEOPS_OPERATOR": "gary"})
    assert second.exit_code == 0 and "APPROVED" in second.output
    stored = ledger.require(order["order_id"])
    assert [(a["approver"], a["source"]) for a in stored["approvals"]] == [("fiona", "TRADEOPS_OPERATOR"),
                                                                           ("gary", "TRADEOPS_OPERATOR")]


def test_cli_lists_rejects_and_exports(ledger: Ledger, cli_env: dict[str, str], tmp_path: Path):
    """`list --status --json`, `reject --reason` and `export --csv FILE` show and change the real table."""
    order = filled(oid(), fill="150.00")
    ledger.record_fill(order)
    runner = CliRunner()
    listed = runner.invoke(reimbursements_app, ["list", "--status", PENDING_APPROVAL, "--json"], env=cli_env)
    assert listed.exit_code == 0, listed.output
    entries = {e["order_id"]: e for e in json.loads(listed.output)}
    assert entries[order["order_id"]]["amount"] == "500.00"
    assert {e["status"] for e in entries.values()} == {PENDING_APPROVAL}
    rejected = runner.invoke(reimbursements_app, ["reject", order["order_id"], "--reason", "customer withdrew", "-y"],
                             env={**cli_env, "TRADEOPS_OPERATOR": "gary"})
    assert rejected.exit_code == 0, rejected.output
    target = tmp_path / "ledger.csv"
    exported = runner.invoke(reimbursements_app, ["export", "--csv", str(target), "--status", REJECTED], env=cli_env)
    assert exported.exit_code == 0, exported.output
    rows = {r["order_id"]: r for r in csv.DictReader(target.open())}
    assert rows[order["order_id"]]["rejection_reason"] == "customer withdrew"
    assert {r["status"] for r in rows.values()} == {REJECTED}


def test_cli_errors_are_one_line_with_their_exit_codes(ledger: Ledger, cli_env: dict[str, str]):
    """A refused approval and an unknown status (exit 2) and an unknown entry (not found, exit 1) leave as one
    `error:` line, never a traceback."""
    order = filled(oid(), fill="120.00")
    ledger.record_fill(order)
    base = ["tradeops", "reimbursements"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_"))}, **cli_env,
           "TRADEOPS_OPERATOR": "hank"}
    for args, code in ((["approve", order["order_id"], "--yes"], 2), (["list", "--status", "PAID"], 2),
                       (["approve", oid("missing"), "--yes"], 1)):
        done = subprocess.run(base + args, env=env, capture_output=True, text=True, timeout=60,
                              cwd=Path(__file__).resolve().parent.parent)
        assert done.returncode == code, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr
