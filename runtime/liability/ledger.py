"""The reimbursement ledger: one item per filled customer order in the reimbursements table.

The amounts and the approval rules are :mod:`tradeops.runtime.liability.reimbursement`'s; this module only stores
them. Every filled, non-synthetic order gets exactly one entry, created by the divergence monitor
when it sees the fill on the orders table's stream:

- amount > 0: a :class:`~tradeops.runtime.liability.reimbursement.Reimbursement` (APPROVED at once up to the
  auto-approve limit, otherwise PENDING_APPROVAL);
- amount = 0 (filled at or better than the quote): status ``NOTHING_DUE``, so that finance can
  see every filled order was assessed, and a replay cannot later create a payable entry.

Once: the entry is created with ``attribute_not_exists(order_id)``, so a replayed fill event never
pays twice. Approvals and rejections are conditional on the ``version`` that was read (a lost race
re-reads and re-applies the rule, which may then refuse, e.g. "already approved by you").

Money: GBP, stored as DynamoDB numbers (exact decimals). ``amount`` is the exact adverse
difference x filled quantity rounded UP to the penny, in the customer's favour.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import IO, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from tradeops.runtime.liability.reimbursement import (
    APPROVED,
    PENDING_APPROVAL,
    REJECTED,
    Approval,
    NothingToReimburse,
    Reimbursement,
    approve,
    compensation,
    new_reimbursement,
    reject,
)
from tradeops.runtime.orderpath.states import FILLED
from tradeops.runtime.platform.aws import Aws, aws_errors, condition_failed
from tradeops.runtime.platform.clock import iso, utcnow
from tradeops.runtime.platform.errors import BadInput, NotFound, OperationFailed
from tradeops.runtime.platform.names import Names, names_for

__all__ = [
    "CSV_FIELDS",
    "NOTHING_DUE",
    "STATUSES",
    "SYSTEM_REQUESTER",
    "ConcurrentChange",
    "Ledger",
    "entry_dict",
    "write_csv",
]

NOTHING_DUE = "NOTHING_DUE"
STATUSES = (PENDING_APPROVAL, APPROVED, REJECTED, NOTHING_DUE)
SYSTEM_REQUESTER = "tradeops-monitor"
"""Who requests the entries the monitor creates (never a person, so any finance approver may approve)."""
CURRENCY = "GBP"

CSV_FIELDS = (
    "order_id", "account_id", "symbol", "side", "quantity", "quote_price", "fill_price", "amount", "currency",
    "waited_seconds", "status", "required_approvals", "approvals", "requested_by", "created_at", "decided_at",
    "rejected_by", "rejection_reason", "provider", "placed_at", "filled_at",
)

_ser = TypeSerializer()
_de = TypeDeserializer()
_RETRIES = 3


class ConcurrentChange(OperationFailed):
    """The entry kept changing under us (another approver); nothing was written."""


def _time(value: Any, what: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            raise BadInput(f"{what} is not an ISO 8601 time: {str(value)[:40]!r}") from None
    if moment.utcoffset() is None:
        raise BadInput(f"{what} has no time zone: {value}")
    return moment.astimezone(UTC)


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise BadInput(f"{what} is missing")
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except ArithmeticError:
        raise BadInput(f"{what} is not a number: {str(value)[:40]!r}") from None
    if not number.is_finite():
        raise BadInput(f"{what} is not finite: {value}")
    return number


def _seconds(span: timedelta) -> Decimal:
    return (Decimal(span // timedelta(microseconds=1)) / 1_000_000).quantize(Decimal("0.001"))


def _quantity(value: Decimal | int) -> int | Decimal:
    number = Decimal(value)
    return int(number) if number == number.to_integral_value() else number


def _to_item(r: Reimbursement, version: int, extra: Mapping[str, Any], approvals: list[dict[str, str]]) -> dict:
    data: dict[str, Any] = {
        "order_id": r.order_id, "account_id": r.account_id, "symbol": r.symbol, "side": r.side,
        "quantity": Decimal(r.quantity), "quote_price": r.quote_price, "fill_price": r.fill_price,
        "amount": r.amount, "currency": r.currency, "waited_seconds": r.waited_seconds, "status": r.status,
        "required_approvals": r.required_approvals, "approvals": approvals, "requested_by": r.requested_by,
        "created_at": iso(r.created_at), "version": version,
        "decided_at": iso(r.decided_at) if r.decided_at else None,
        "rejected_by": r.rejected_by, "rejection_reason": r.rejection_reason, **extra,
    }
    return {k: _ser.serialize(v) for k, v in data.items() if v is not None}


def _from_item(item: Mapping[str, Any]) -> tuple[Reimbursement, int, dict[str, Any]]:
    """(reimbursement, version, the stored item as plain values)."""
    raw = {k: _de.deserialize(v) for k, v in item.items()}
    r = Reimbursement(
        order_id=raw["order_id"], account_id=raw["account_id"], symbol=raw["symbol"], side=raw["side"],
        quantity=_quantity(raw["quantity"]), quote_price=raw["quote_price"], fill_price=raw["fill_price"],
        amount=raw["amount"], currency=raw.get("currency", CURRENCY), waited_seconds=raw["waited_seconds"],
        status=raw["status"], required_approvals=int(raw["required_approvals"]),
        approvals=tuple(Approval(a["approver"], _time(a["at"], "approval time")) for a in raw.get("approvals", [])),
        requested_by=raw["requested_by"], created_at=_time(raw["created_at"], "created_at"),
        decided_at=_time(raw["decided_at"], "decided_at") if raw.get("decided_at") else None,
        rejected_by=raw.get("rejected_by"), rejection_reason=raw.get("rejection_reason"),
    )
    return r, int(raw.get("version", 1)), raw


def entry_dict(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A stored entry as JSON-friendly values (money as strings, quantity as a number)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, Decimal):
            if key in ("quantity", "required_approvals", "version"):
                out[key] = int(value) if value == value.to_integral_value() else str(value)
            else:
                out[key] = str(value)
        elif key == "approvals":
            out[key] = [{k: str(v) for k, v in a.items()} for a in value]
        else:
            out[key] = value
    return out


def _approvals(raw: Mapping[str, Any] | None) -> list[dict[str, str]]:
    return [dict(a) for a in (raw or {}).get("approvals", [])]


class Ledger:
    """The reimbursements table. Only this class writes ledger items."""

    def __init__(self, aws: Aws, names: Names | None = None) -> None:
        self.aws = aws
        self.settings = aws.settings
        self.names = names or names_for(aws.settings)
        self.table = self.names.reimbursements_table

    # ---- creation ------------------------------------------------------------------------------
    def entry_for_fill(self, order: Mapping[str, Any], *, now: datetime | None = None,
                       filled_at_fallback: datetime | None = None) -> tuple[Reimbursement, dict[str, Any]]:
        """The entry a filled order calls for (not stored): (reimbursement, extra stored fields).

        ``order`` is an orders-table item as plain values (``tradeops.runtime.orderpath.orders.from_item``).
        """
        now = now or utcnow()
        if order.get("status") != FILLED:
            raise BadInput(f"order {order.get('order_id')} is {order.get('status')}, not FILLED")
        if order.get("synthetic"):
            raise BadInput(f"order {order.get('order_id')} is synthetic (a canary): never reimbursed")
        quantity = _quantity(_decimal(order.get("filled_quantity") or order.get("quantity"), "quantity"))
        quote = _decimal(order.get("quote_price"), "quote_price")
        fill = _decimal(order.get("fill_price"), "fill_price")
        placed_at = _time(order.get("placed_at"), "placed_at")
        if order.get("filled_at"):
            filled_at = _time(order["filled_at"], "filled_at")
        elif filled_at_fallback is not None:
            filled_at = filled_at_fallback
        else:
            raise BadInput(f"order {order.get('order_id')} has no filled_at")
        extra = {"placed_at": iso(placed_at), "filled_at": iso(filled_at), "provider": order.get("provider")}
        common = dict(order_id=order["order_id"], account_id=order["account_id"], symbol=order["symbol"],
                      side=order["side"], quantity=quantity, quote_price=quote, fill_price=fill)
        try:
            r = new_reimbursement(
                **common, placed_at=placed_at, filled_at=max(filled_at, placed_at), requested_by=SYSTEM_REQUESTER,
                auto_approve=self.settings.reimburse_auto_approve, dual_approval=self.settings.reimburse_dual_approval,
                now=now,
            )
        except NothingToReimburse:
            # Assessed and owed nothing: recorded all the same (see the module docstring).
            waited = max(filled_at - placed_at, timedelta(0))
            r = Reimbursement(
                **common, amount=compensation(order["side"], quote, fill, quantity), currency=CURRENCY,
                waited_seconds=_seconds(waited), status=NOTHING_DUE,
                required_approvals=0, requested_by=SYSTEM_REQUESTER, created_at=now, decided_at=now,
            )
        return r, extra

    def create(self, r: Reimbursement, *, extra: Mapping[str, Any] | None = None) -> bool:
        """Store a new entry once per order. Returns False (and changes nothing) when one exists."""
        approvals = [{"approver": a.approver, "at": iso(a.at), "source": "auto"} for a in r.approvals]
        try:
            self.aws.dynamodb.put_item(TableName=self.table, Item=_to_item(r, 1, extra or {}, approvals),
                                       ConditionExpression="attribute_not_exists(order_id)")
        except Exception as exc:
            if condition_failed(exc):
                return False
            with aws_errors(f"record reimbursement for order {r.order_id}"):
                raise
        return True

    def record_fill(self, order: Mapping[str, Any], *, now: datetime | None = None,
                    filled_at_fallback: datetime | None = None) -> tuple[Reimbursement, bool]:
        """Create the entry of a filled order once; (entry, created). A replay returns created=False."""
        r, extra = self.entry_for_fill(order, now=now, filled_at_fallback=filled_at_fallback)
        return r, self.create(r, extra=extra)

    # ---- reads ---------------------------------------------------------------------------------
    def _read(self, order_id: str) -> tuple[Reimbursement, int, dict[str, Any]] | None:
        with aws_errors(f"read reimbursement {order_id}"):
            got = self.aws.dynamodb.get_item(TableName=self.table, Key={"order_id": {"S": order_id}},
                                             ConsistentRead=True)
        return _from_item(got["Item"]) if "Item" in got else None

    def get(self, order_id: str) -> dict[str, Any] | None:
        """The stored entry as plain values, or None."""
        found = self._read(order_id)
        return None if found is None else found[2]

    def require(self, order_id: str) -> dict[str, Any]:
        entry = self.get(order_id)
        if entry is None:
            raise NotFound(f"no reimbursement for order {order_id!r}")
        return entry

    def entries(self, statuses: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """Stored entries (plain values), optionally only those in ``statuses``.

        A Scan with a filter: the table is keyed by order only and this is finance's occasional
        listing, not a hot path (a status index would serve a very large ledger better).
        """
        wanted = list(dict.fromkeys(statuses or ()))
        for status in wanted:
            if status not in STATUSES:
                raise BadInput(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        if wanted:
            kwargs["FilterExpression"] = "#s IN (" + ", ".join(f":s{i}" for i in range(len(wanted))) + ")"
            kwargs["ExpressionAttributeNames"] = {"#s": "status"}
            kwargs["ExpressionAttributeValues"] = {f":s{i}": {"S": s} for i, s in enumerate(wanted)}
        with aws_errors("list reimbursements"):
            while True:
                page = self.aws.dynamodb.scan(**kwargs)
                for item in page.get("Items", []):
                    yield {k: _de.deserialize(v) for k, v in item.items()}
                if "LastEvaluatedKey" not in page:
                    return
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # ---- decisions -----------------------------------------------------------------------------
    def _decide(self, order_id: str, decide: Any, source: str) -> dict[str, Any]:
        for _attempt in range(_RETRIES):
            found = self._read(order_id)
            if found is None:
                raise NotFound(f"no reimbursement for order {order_id!r}")
            current, version, raw = found
            updated: Reimbursement = decide(current)  # the pure rule; raises ApprovalRefused
            approvals = _approvals(raw)
            for approval in updated.approvals[len(current.approvals):]:
                approvals.append({"approver": approval.approver, "at": iso(approval.at), "source": source})
            extra = {k: raw[k] for k in ("placed_at", "filled_at", "provider") if raw.get(k) is not None}
            try:
                self.aws.dynamodb.put_item(
                    TableName=self.table, Item=_to_item(updated, version + 1, extra, approvals),
                    ConditionExpression="#v = :v", ExpressionAttributeNames={"#v": "version"},
                    ExpressionAttributeValues={":v": {"N": str(version)}},
                )
            except Exception as exc:
                if condition_failed(exc):
                    continue  # someone decided first: re-read and apply the rule to what is there now
                with aws_errors(f"update reimbursement {order_id}"):
                    raise
            return self.require(order_id)
        raise ConcurrentChange(f"reimbursement {order_id} changed {_RETRIES} times while deciding; try again")

    def approve(self, order_id: str, *, approver: str, roles: Iterable[str], source: str = "unknown",
                now: datetime | None = None) -> dict[str, Any]:
        """Add ``approver``'s approval (rules of tradeops.runtime.liability.reimbursement); returns the stored entry."""
        held = frozenset(roles)
        return self._decide(order_id, lambda r: approve(r, approver=approver, roles=held,
                                                        now=now or utcnow()), source)

    def reject(self, order_id: str, *, approver: str, roles: Iterable[str], reason: str, source: str = "unknown",
               now: datetime | None = None) -> dict[str, Any]:
        """Reject the entry with a reason (the rules of :mod:`.reimbursement`); returns the stored entry."""
        held = frozenset(roles)
        return self._decide(order_id, lambda r: reject(r, approver=approver, roles=held, reason=reason,
                                                       now=now or utcnow()), source)


def _csv_safe(value: Any) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet would run a cell starting with these as a formula (CSV injection).
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def write_csv(entries: Iterable[Mapping[str, Any]], fh: IO[str]) -> int:
    """Write entries (plain values from :meth:`Ledger.entries`) as CSV for finance; returns the row count."""
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    rows = 0
    for entry in entries:
        flat = entry_dict(entry)
        flat["approvals"] = ";".join(f"{a['approver']}@{a['at']}" for a in flat.get("approvals", []))
        writer.writerow([_csv_safe(flat.get(field)) for field in CSV_FIELDS])
        rows += 1
    return rows

