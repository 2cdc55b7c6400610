"""No price-blind liability on the whole local stack (issue 13, item 3): a held order the monitor cannot price
is reported as unpriced, never as zero exposure."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from tests.support.orderflow import wait_until
from tests.support.stack import run_cli


def _exposure(env: dict[str, str]) -> dict[str, Any]:
    done = run_cli("exposure", "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_held_order_for_an_unpriced_symbol_shows_as_unpriced_never_as_zero_exposure(flow):
    """With unpriced symbols allowed, an order for a symbol outside the universe, held while processing is
    paused, shows in `exposure --json` under `unpriced` (count, oldest age, notional at quote) and breaches the
    unpriced_amount threshold; the text says its exposure is unknown; once it fills, nothing is unpriced."""
    env = flow.stack["env"]
    assert env["TRADEOPS_ALLOW_UNPRICED_SYMBOLS"] == "true"
    before = _exposure(env)["unpriced"]
    flow.flag("processing", "paused")
    time.sleep(1.5)  # workers see the flag within flag_refresh_seconds
    body = {"order_id": flow.unique("unpriced"), "account_id": "acc-unpriced", "symbol": "NOPE.L", "side": "BUY",
            "quantity": 40, "quote_price": "2.50"}
    assert flow.post(body)["status"] == "ACCEPTED"
    summary = wait_until("the monitor to report the order unpriced", lambda: (
        s if (s := _exposure(env))["unpriced"]["orders"] == before["orders"] + 1 else None), 30, every=0.5)
    unpriced = summary["unpriced"]
    assert Decimal(unpriced["notional"]) - Decimal(before["notional"]) == Decimal("100.00")
    assert unpriced["oldest_seconds"] >= 0
    assert body["order_id"] not in {row["order_id"] for row in summary["worst"]}
    threshold = next(t for t in summary["thresholds"] if t["name"] == "unpriced_amount")
    assert threshold["breached"] and threshold["unit"] == "GBP" and threshold["orders_breached"] >= 1
    assert "stale_price" in summary
    text = run_cli("exposure", env=env).stdout
    assert "unpriced:" in text and "their exposure is unknown" in text
    flow.flag("processing", "running")
    flow.wait_final([body["order_id"]], timeout=30)
    wait_until("the unpriced order to leave the monitor's figures",
               lambda: _exposure(env)["unpriced"]["orders"] == before["orders"], 30, every=0.5)
