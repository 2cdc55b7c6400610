"""Orders: the request model, the states, and the orders table (the only place order state changes).

Every change is a conditional write on one DynamoDB item, and every transition appends an
entry ``{at, status, actor, provider?, note?}`` to the item's ``history``. The rule the design
serves (docs/architecture.md, "Exactly once across a broker switch") is kept by one invariant here:

    ``provider`` names the only broker that may hold the order. It is written *before* the order
    is sent, and it is changed or cleared only after that broker has proved it does not hold the
    order (connection refused, an explicit non-acceptance, a cancel or status answer) or an
    operator has declared its in-flight orders void.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from decimal import Context, Decimal
from typing import Any, Literal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tradeops.runtime.orderpath.answers import Decision
from tradeops.runtime.orderpath.states import ACCEPTED, STATES, check_transition
from tradeops.runtime.platform.aws import Aws, aws_errors, condition_failed
from tradeops.runtime.platform.clock import iso, utcnow
from tradeops.runtime.platform.errors import NotFound
from tradeops.runtime.platform.names import Names, names_for

__all__ = [
    "OrderRequest",
    "OrderStore",
    "from_item",
    "new_order",
    "order_json",
    "payload_differences",
]


_ser = TypeSerializer()
_de = TypeDeserializer()
_EXACT = Context(prec=100)  # wider than any DynamoDB number (38 digits): never rounds


def order_json(order: dict[str, Any]) -> dict[str, Any]:
    """An order (as OrderStore returns it) as JSON-ready data: money as strings, never floats."""
    return _plain(order)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Normalised so the 202 answer and a later GET agree: DynamoDB drops trailing zeros itself.
        text = format(value.normalize(_EXACT), "f")
        return "0" if text in ("-0", "0") else text
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


class OrderRequest(BaseModel):
    """An order as the platform submits it (docs/architecture.md, "An order")."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    order_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
                                 description="Client order id; the idempotency key. Generated when absent.")
    account_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    symbol: str = Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9][A-Z0-9.\-]*$")
    side: Literal["BUY", "SELL"]
    quantity: int = Field(gt=0, le=10_000_000)
    order_type: Literal["MARKET", "LIMIT"] = "MARKET"
    limit_price: Decimal | None = Field(default=None, gt=0, max_digits=18, decimal_places=6)
    quote_price: Decimal = Field(gt=0, max_digits=18, decimal_places=6,
                                 description="The price the customer was shown (GBP).")
    placed_at: datetime | None = Field(default=None, description="When the customer placed it (UTC).")
    synthetic: bool = Field(default=False, description="Canary order: never customer exposure or reimbursement.")

    @field_validator("limit_price", "quote_price", mode="before")
    @classmethod
    def _no_floats_for_money(cls, value: Any) -> Any:
        # JSON numbers arrive as float; go through str so 0.1 stays 0.1, and refuse NaN/inf.
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError("must be a finite number")
            return Decimal(str(value))
        return value

    @field_validator("placed_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a timezone (UTC)")
        try:
            return value.astimezone(UTC) if value else None
        except OverflowError:
            raise ValueError("is outside the range of dates") from None

    @model_validator(mode="after")
    def _limit_rules(self) -> OrderRequest:
        if self.order_type == "LIMIT" and self.limit_price is None:
            raise ValueError("limit_price is required for a LIMIT order")
        if self.order_type == "MARKET" and self.limit_price is not None:
            raise ValueError("limit_price is only allowed on a LIMIT order")
        return self


def new_order(req: OrderRequest, *, now: datetime | None = None, actor: str = "intake") -> dict[str, Any]:
    """The ACCEPTED order item for a validated request."""
    now = now or utcnow()
    order = {
        "order_id": req.order_id or f"ord-{uuid.uuid4().hex}",
        "account_id": req.account_id,
        "symbol": req.symbol,
        "side": req.side,
        "quantity": req.quantity,
        "order_type": req.order_type,
        "quote_price": req.quote_price,
        "placed_at": iso(req.placed_at or now),
        "synthetic": req.synthetic,
        "status": ACCEPTED,
        "version": 1,
        "created_at": iso(now),
        "updated_at": iso(now),
        "history": [{"at": iso(now), "status": ACCEPTED, "actor": actor}],
    }
    if req.limit_price is not None:
        order["limit_price"] = req.limit_price
    return order


# What a client says about an order: a second post of its order_id must say the same (the idempotency key
# names one order, not a slot). placed_at is left out: a client that omits it gets the intake's clock.
PAYLOAD_FIELDS = ("account_id", "symbol", "side", "quantity", "order_type", "limit_price", "quote_price",
                  "synthetic")


def payload_differences(stored: dict[str, Any], posted: dict[str, Any]) -> list[str]:
    """The payload fields in which ``posted`` differs from ``stored`` (numbers compared by value:
    100.5 and 100.50 are one price), in PAYLOAD_FIELDS order; empty for an identical repeat."""
    return [f for f in PAYLOAD_FIELDS if stored.get(f) != posted.get(f)]


def to_item(order: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in order.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain Python (numbers as Decimal, quantity as int)."""
    return _as_order({k: _de.deserialize(v) for k, v in item.items()})


def _as_order(order: dict[str, Any]) -> dict[str, Any]:
    """Deserialised attributes as an order: the whole-number fields as int (the rest as DynamoDB gives them)."""
    for key in ("quantity", "version", "attempts", "filled_quantity", "sweeps"):
        if isinstance(order.get(key), Decimal):
            order[key] = int(order[key])
    return order


class StaleOrder(Exception):
    """A conditional write lost: someone else changed the order first."""


class OrderStore:
    """The orders table. Only this class writes order items."""

    def __init__(self, aws: Aws, names: Names | None = None) -> None:
        self.aws = aws
        self.names = names or names_for(aws.settings)
        self.table = self.names.orders_table

    # ---- reads -------------------------------------------------------------------------------
    def get(self, order_id: str, *, consistent: bool = True) -> dict[str, Any] | None:
        with aws_errors(f"read order {order_id}"):
            got = self.aws.dynamodb.get_item(TableName=self.table, Key={"order_id": {"S": order_id}},
                                             ConsistentRead=consistent)
        return from_item(got["Item"]) if "Item" in got else None

    def get_many(self, order_ids: Iterable[str], *, consistent: bool = True) -> dict[str, dict[str, Any]]:
        """The orders that exist among ``order_ids``, by id: BatchGetItem, 100 keys a call."""
        keys = [{"order_id": {"S": oid}} for oid in sorted(set(order_ids))]
        orders: dict[str, dict[str, Any]] = {}
        with aws_errors("read orders"):
            while keys:
                got = self.aws.dynamodb.batch_get_item(
                    RequestItems={self.table: {"Keys": keys[:100], "ConsistentRead": consistent}})
                for item in got.get("Responses", {}).get(self.table, []):
                    order = from_item(item)
                    orders[order["order_id"]] = order
                unprocessed = got.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
                keys = unprocessed + keys[100:]
        return orders

    def require(self, order_id: str) -> dict[str, Any]:
        order = self.get(order_id)
        if order is None:
            raise NotFound(f"no order {order_id!r}")
        return order

    def by_status(self, status: str, *, symbol: str | None = None) -> Iterator[dict[str, Any]]:
        """Orders in one state, through the status/symbol index (never a table scan)."""
        expr = "#s = :s" + (" AND symbol = :y" if symbol else "")
        values: dict[str, Any] = {":s": {"S": status}}
        if symbol:
            values[":y"] = {"S": symbol}
        kwargs: dict[str, Any] = {
            "TableName": self.table, "IndexName": self.names.status_symbol_index,
            "KeyConditionExpression": expr, "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": values,
        }
        yield from self._query(kwargs, f"query {status} orders")

    def by_watch(self, watch: str) -> Iterator[dict[str, Any]]:
        """Orders under one watch, through the sparse watch index (``void``: declared void and not yet
        checked at that broker; ``double:open`` | ``double:unwound`` | ``double:written_off``: executed twice)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table, "IndexName": self.names.watch_index,
            "KeyConditionExpression": "#w = :w", "ExpressionAttributeNames": {"#w": "watch"},
            "ExpressionAttributeValues": {":w": {"S": watch}},
        }
        yield from self._query(kwargs, f"query orders under watch {watch}")

    def accepted_untouched_since(self, cutoff: datetime) -> Iterator[dict[str, Any]]:
        """ACCEPTED orders not changed since ``cutoff``: the sweeper's candidates (:mod:`.sweep`).

        One query of the ACCEPTED partition of the status index (on a busy table it holds only the orders
        not yet claimed, never the filled ones); the filter only trims what comes back (timestamps are
        fixed-width ISO strings, so they compare as text).
        """
        kwargs: dict[str, Any] = {
            "TableName": self.table, "IndexName": self.names.status_symbol_index,
            "KeyConditionExpression": "#s = :s", "FilterExpression": "#u < :cutoff",
            "ExpressionAttributeNames": {"#s": "status", "#u": "updated_at"},
            "ExpressionAttributeValues": {":s": {"S": ACCEPTED}, ":cutoff": {"S": iso(cutoff)}},
        }
        yield from self._query(kwargs, "query ACCEPTED orders")

    def _query(self, kwargs: dict[str, Any], what: str) -> Iterator[dict[str, Any]]:
        """Every order a Query returns, page after page; AWS trouble is an AwsError naming ``what``."""
        with aws_errors(what):
            while True:
                page = self.aws.dynamodb.query(**kwargs)
                for item in page.get("Items", []):
                    yield from_item(item)
                if "LastEvaluatedKey" not in page:
                    return
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def count_by_status(self) -> dict[str, int]:
        counts = {}
        for status in STATES:
            kwargs: dict[str, Any] = {
                "TableName": self.table, "IndexName": self.names.status_symbol_index, "Select": "COUNT",
                "KeyConditionExpression": "#s = :s", "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":s": {"S": status}},
            }
            total = 0
            with aws_errors("count orders"):
                while True:
                    page = self.aws.dynamodb.query(**kwargs)
                    total += page.get("Count", 0)
                    if "LastEvaluatedKey" not in page:
                        break
                    kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            counts[status] = total
        return counts

    # ---- writes ------------------------------------------------------------------------------
    def create(self, order: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Record a new ACCEPTED order. Returns (order, created); an existing id returns the stored one."""
        try:
            self.aws.dynamodb.put_item(TableName=self.table, Item=to_item(order),
                                       ConditionExpression="attribute_not_exists(order_id)")
        except Exception as exc:
            if not condition_failed(exc):
                with aws_errors(f"record order {order['order_id']}"):
                    raise
            existing = self.get(order["order_id"])
            if existing is None:  # pragma: no cover - deleted between the two calls
                raise
            return existing, False
        return order, True

    def withdraw_unsent(self, order_id: str) -> bool:
        """Delete an order that was recorded but never enqueued (intake's undo when SendMessage fails).

        Conditional on ``version = 1``, ACCEPTED and never swept, so an order a worker already took (the
        message may have been sent after all) or the sweeper re-enqueued meanwhile is left alone. Returns
        True when the item was deleted.
        """
        try:
            self.aws.dynamodb.delete_item(
                TableName=self.table, Key={"order_id": {"S": order_id}},
                ConditionExpression="#v = :one AND #s = :accepted AND attribute_not_exists(#w)",
                ExpressionAttributeNames={"#v": "version", "#s": "status", "#w": "swept_at"},
                ExpressionAttributeValues={":one": {"N": "1"}, ":accepted": {"S": ACCEPTED}},
            )
        except Exception as exc:
            if condition_failed(exc):
                return False
            with aws_errors(f"withdraw order {order_id}"):
                raise
        return True

    def mark_swept(self, order: dict[str, Any], *, actor: str, now: datetime | None = None) -> bool:
        """Claim the right to re-enqueue an ACCEPTED order (the sweeper's), once per sweep period.

        One conditional write: the order is still ACCEPTED at the version read, and nobody swept it since
        it was read (``swept_at`` unchanged), so of several workers sweeping at once exactly one sends the
        message. It records ``swept_at``, counts ``sweeps`` and adds a history entry, but leaves ``version``
        alone: a worker claiming the order at the same moment (its message came after all) must not lose
        its claim to a bookkeeping write. Returns False when another writer got there first.
        """
        now = now or utcnow()
        entry = {"at": iso(now), "status": ACCEPTED, "actor": actor, "note": "swept: no message seen; re-enqueued"}
        names = {"#s": "status", "#v": "version", "#w": "swept_at", "#n": "sweeps", "#h": "history"}
        values: dict[str, Any] = {":accepted": {"S": ACCEPTED}, ":v": {"N": str(order["version"])},
                                  ":now": {"S": iso(now)}, ":zero": {"N": "0"}, ":one": {"N": "1"},
                                  ":entry": _ser.serialize([entry])}
        condition = "#s = :accepted AND #v = :v AND "
        if order.get("swept_at"):
            condition += "#w = :prev"
            values[":prev"] = {"S": str(order["swept_at"])}
        else:
            condition += "attribute_not_exists(#w)"
        try:
            self.aws.dynamodb.update_item(
                TableName=self.table, Key={"order_id": {"S": order["order_id"]}},
                UpdateExpression="SET #w = :now, #n = if_not_exists(#n, :zero) + :one, #h = list_append(#h, :entry)",
                ConditionExpression=condition, ExpressionAttributeNames=names, ExpressionAttributeValues=values,
            )
        except Exception as exc:
            if condition_failed(exc):
                return False
            with aws_errors(f"mark order {order['order_id']} swept"):
                raise
        return True

    def transition(
        self,
        order: dict[str, Any],
        status: str,
        *,
        actor: str,
        set_fields: dict[str, Any] | None = None,
        remove_fields: tuple[str, ...] = (),
        note: str | None = None,
        now: datetime | None = None,
        count_attempt: bool = False,
    ) -> dict[str, Any]:
        """Move ``order`` (as last read) to ``status`` if nobody changed it since (version check).

        Raises StaleOrder when the condition fails, and IllegalTransition (before writing anything)
        when the state machine (:mod:`.states`) does not allow the move; returns the new order.
        """
        check_transition(order["status"], status)
        return self._write(order, status, actor=actor, set_fields=set_fields, remove_fields=remove_fields,
                           note=note, now=now, count_attempt=count_attempt)

    def apply(self, order: dict[str, Any], decision: Decision, *, actor: str) -> dict[str, Any]:
        """Write a decided move (:mod:`.answers`) like :meth:`transition`; ``order`` as it is when
        the decision writes nothing."""
        if decision.status is None:
            return order
        return self.transition(order, decision.status, actor=actor, note=decision.note,
                               set_fields=dict(decision.set_fields), remove_fields=decision.remove_fields)

    def annotate(
        self,
        order: dict[str, Any],
        *,
        actor: str,
        note: str,
        set_fields: dict[str, Any] | None = None,
        remove_fields: tuple[str, ...] = (),
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Record facts on ``order`` without moving its state (a final order too), if nobody changed it since.

        For what is learnt about an order after the fact: the void watch's verdict, a double
        execution and the decision to unwind it. The history gets an entry with the same status and
        ``note``; ``status`` and ``provider`` cannot be changed this way. Raises StaleOrder like
        :meth:`transition`.
        """
        fields = dict(set_fields or {})
        if {"status", "provider"} & (set(fields) | set(remove_fields)):
            raise ValueError("annotate() records facts; the order's state moves only through transition()")
        return self._write(order, order["status"], actor=actor, set_fields=fields, remove_fields=remove_fields,
                           note=note, now=now)

    def _write(
        self,
        order: dict[str, Any],
        status: str,
        *,
        actor: str,
        set_fields: dict[str, Any] | None = None,
        remove_fields: tuple[str, ...] = (),
        note: str | None = None,
        now: datetime | None = None,
        count_attempt: bool = False,
    ) -> dict[str, Any]:
        now = now or utcnow()
        fields = dict(set_fields or {})
        fields["status"] = status
        fields["updated_at"] = iso(now)
        entry: dict[str, Any] = {"at": iso(now), "status": status, "actor": actor}
        provider = fields.get("provider", order.get("provider"))
        if provider and "provider" not in remove_fields:
            entry["provider"] = provider
        if note:
            entry["note"] = note
        names = {"#h": "history", "#v": "version"}
        values: dict[str, Any] = {":entry": _ser.serialize([entry]), ":one": {"N": "1"},
                                  ":expected": {"N": str(order["version"])}}
        sets = ["#h = list_append(#h, :entry)", "#v = #v + :one"]
        for i, (key, value) in enumerate(fields.items()):
            names[f"#f{i}"] = key
            values[f":f{i}"] = _ser.serialize(value)
            sets.append(f"#f{i} = :f{i}")
        if count_attempt:
            names["#a"] = "attempts"
            values[":zero"] = {"N": "0"}
            sets.append("#a = if_not_exists(#a, :zero) + :one")
        expr = "SET " + ", ".join(sets)
        if remove_fields:
            for j, key in enumerate(remove_fields):
                names[f"#r{j}"] = key
            expr += " REMOVE " + ", ".join(f"#r{j}" for j in range(len(remove_fields)))
        try:
            # No ReturnValues: the write is conditional on the version we read, so the item it leaves is
            # exactly `order` with these changes, built below. Sending the whole item back (history and
            # all) on every move costs DynamoDB read bandwidth and, in the local emulator, more than the
            # write itself (bench/README.md, "Where the emulator's time went").
            self.aws.dynamodb.update_item(
                TableName=self.table, Key={"order_id": {"S": order["order_id"]}},
                UpdateExpression=expr, ConditionExpression="#v = :expected",
                ExpressionAttributeNames=names, ExpressionAttributeValues=values,
            )
        except Exception as exc:
            if condition_failed(exc):
                raise StaleOrder(order["order_id"]) from None
            with aws_errors(f"update order {order['order_id']}"):
                raise
        after = {k: v for k, v in order.items() if k not in remove_fields}
        after.update({key: _de.deserialize(values[f":f{i}"]) for i, key in enumerate(fields)})
        after["history"] = [*order.get("history", []), *_de.deserialize(values[":entry"])]
        after["version"] = int(order["version"]) + 1
        if count_attempt:
            after["attempts"] = int(order.get("attempts") or 0) + 1
        return _as_order(after)
