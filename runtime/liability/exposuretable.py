"""The exposure table: every order's maximum exposure, and the divergence monitor's reserved items.

One item per order that has been exposed (``order_id``: its maximum exposure while it waited, GBP
to the penny). Order ids cannot start with ``#``, so the monitor keeps its own items beside them
under reserved keys:

- ``#summary`` (:data:`SUMMARY_KEY`): the live summary, read by ``tradeops exposure`` (:func:`read_summary`);
- ``#checkpoint#prices#<shard>`` (:func:`price_checkpoint_key`): per price shard, the last sequence
  number applied *and* the last price of every symbol of that shard, in one item, so the two
  always agree;
- ``#checkpoint#orders`` (:data:`ORDERS_CHECKPOINT_KEY`): per shard of the orders table's stream,
  the last sequence number applied;
- ``#alerts`` (:data:`ALERTS_KEY`): the paging state of the exposure breaches that have paged;
- ``#pager#brokers``: the broker pager's state (:mod:`.pager`).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.names import Names, names_for
from tradeops.runtime.platform.retries import batch_get_all, batch_write_all

if TYPE_CHECKING:  # only for annotations: `tradeops exposure` reads the summary without the book's code
    from tradeops.runtime.liability.orderexposure import OrderExposure

__all__ = [
    "ALERTS_KEY",
    "ORDERS_CHECKPOINT_KEY",
    "SUMMARY_KEY",
    "ExposureTable",
    "exposure_item",
    "orders_checkpoint_item",
    "price_checkpoint_item",
    "price_checkpoint_key",
    "read_summary",
]

SUMMARY_KEY = "#summary"
ALERTS_KEY = "#alerts"
ORDERS_CHECKPOINT_KEY = "#checkpoint#orders"
_PRICE_CHECKPOINT_PREFIX = "#checkpoint#prices#"


def price_checkpoint_key(shard_id: str) -> str:
    return f"{_PRICE_CHECKPOINT_PREFIX}{shard_id}"


def exposure_item(view: OrderExposure, max_exposure: Decimal, stamp: str) -> dict[str, Any]:
    """An order's item: its maximum exposure while it waited (GBP, to the penny)."""
    return {"order_id": {"S": view.order_id}, "symbol": {"S": view.symbol}, "side": {"S": view.side},
            "quantity": {"N": str(view.quantity)}, "quote_price": {"N": str(view.quote_price)},
            "max_exposure": {"N": str(max_exposure)}, "currency": {"S": "GBP"}, "updated_at": {"S": stamp}}


def price_checkpoint_item(shard: str, sequence_number: str, prices: dict[str, list[str]], stamp: str) -> dict[str, Any]:
    """A price shard's checkpoint: its position and the last ``[price, at]`` of each of its symbols."""
    return {"order_id": {"S": price_checkpoint_key(shard)}, "sequence_number": {"S": sequence_number},
            "prices": {"S": json.dumps(prices, sort_keys=True)}, "updated_at": {"S": stamp}}


def orders_checkpoint_item(stream_arn: str, positions: dict[str, str], stamp: str) -> dict[str, Any]:
    """The orders stream's checkpoint: the stream it belongs to and the position of each shard."""
    return {"order_id": {"S": ORDERS_CHECKPOINT_KEY}, "stream_arn": {"S": stream_arn},
            "positions": {"S": json.dumps(positions, sort_keys=True)}, "updated_at": {"S": stamp}}


class ExposureTable:
    """Reads and writes of the exposure table (see the module docstring)."""

    def __init__(self, aws: Aws, names: Names) -> None:
        self.aws = aws
        self.name = names.exposure_table

    def get(self, key: str) -> dict[str, Any] | None:
        with aws_errors(f"read {key} from {self.name}"):
            got = self.aws.dynamodb.get_item(TableName=self.name, Key={"order_id": {"S": key}}, ConsistentRead=True)
        item: dict[str, Any] | None = got.get("Item")
        return item

    def batch_get(self, keys: list[str], projection: str) -> list[dict[str, Any]]:
        """The items of ``keys`` (``projection`` names the key ``#k``), in batches of 100."""
        items: list[dict[str, Any]] = []
        for i in range(0, len(keys), 100):
            request: dict[str, Any] = {self.name: {
                "Keys": [{"order_id": {"S": k}} for k in keys[i:i + 100]], "ConsistentRead": True,
                "ProjectionExpression": projection, "ExpressionAttributeNames": {"#k": "order_id"}}}
            with aws_errors("read the exposure table"):
                items += batch_get_all(self.aws.dynamodb, request, what="read the exposure table").get(self.name, [])
        return items

    def batch_write(self, items: list[dict[str, Any]]) -> None:
        for i in range(0, len(items), 25):
            puts = [{"PutRequest": {"Item": item}} for item in items[i:i + 25]]
            batch_write_all(self.aws.dynamodb, {self.name: puts}, what=f"write {self.name}")

    def put(self, item: dict[str, Any]) -> None:
        self.aws.dynamodb.put_item(TableName=self.name, Item=item)

    # ---- a restart's reads ---------------------------------------------------------------------
    def orders_positions(self, stream_arn: str) -> dict[str, str]:
        """The orders stream's checkpointed positions, or none when they belong to another stream."""
        checkpoint = self.get(ORDERS_CHECKPOINT_KEY)
        if checkpoint and checkpoint.get("stream_arn", {}).get("S") == stream_arn:
            positions: dict[str, str] = json.loads(checkpoint["positions"]["S"])
            return positions
        return {}

    def maxima(self, order_ids: list[str]) -> dict[str, Decimal]:
        """The stored maximum exposure of each of ``order_ids`` that has one."""
        return {item["order_id"]["S"]: Decimal(item["max_exposure"]["N"])
                for item in self.batch_get(order_ids, "#k, max_exposure") if "max_exposure" in item}

    def price_checkpoints(self, shards: list[str]) -> list[tuple[str, str, dict[str, list[str]]]]:
        """(shard, sequence number, {symbol: [price, at]}) of each of ``shards`` that has a checkpoint."""
        return [(item["order_id"]["S"][len(_PRICE_CHECKPOINT_PREFIX):], item["sequence_number"]["S"],
                 json.loads(item["prices"]["S"]))
                for item in self.batch_get([price_checkpoint_key(s) for s in shards], "#k, sequence_number, prices")]

    def paging_state(self) -> dict[str, Any]:
        """The exposure paging state saved by the last monitor (``{}`` when none)."""
        item = self.get(ALERTS_KEY)
        state: dict[str, Any] = json.loads(item["paging"]["S"]) if item and "paging" in item else {}
        return state

    # ---- writes --------------------------------------------------------------------------------
    def put_summary(self, summary: dict[str, Any]) -> None:
        self.put({"order_id": {"S": SUMMARY_KEY}, "body": {"S": json.dumps(summary, sort_keys=True)},
                  "updated_at": {"S": summary["updated_at"]}})

    def put_paging_state(self, state: dict[str, Any], stamp: str) -> None:
        self.put({"order_id": {"S": ALERTS_KEY}, "paging": {"S": json.dumps(state, default=str)},
                  "updated_at": {"S": stamp}})


def read_summary(aws: Aws, names: Names | None = None) -> dict[str, Any] | None:
    """The monitor's last published summary (the ``#summary`` item), or None when there is none."""
    names = names or names_for(aws.settings)
    with aws_errors("read the exposure summary"):
        got = aws.dynamodb.get_item(TableName=names.exposure_table, Key={"order_id": {"S": SUMMARY_KEY}},
                                    ConsistentRead=True)
    item = got.get("Item")
    return json.loads(item["body"]["S"]) if item else None
