"""The order mix of a load scenario: which orders a simulated customer places. Pure.

Given a random source, the live quotes and an order id, :meth:`Mix.order` returns the body the
intake API takes (``POST /orders``, docs/architecture.md "An order"):

- the symbol from the price feed's universe, with skewed popularity: the symbol of rank ``k``
  (in the feed's order) is chosen with weight ``1 / k ** skew``, so a few symbols take most of
  the flow;
- ``BUY`` with probability ``buy``, else ``SELL``; ``LIMIT`` with probability ``limit``, else
  ``MARKET``;
- a log-normal quantity around ``quantity_median`` (whole shares, 1 to ``quantity_max``);
- the quote taken from the live feed; a LIMIT order's limit is the quote moved by a random
  ``limit_offset_bps`` in the customer's favour of execution (positive: marketable, so it fills;
  negative: it may be rejected, as such orders are in a real market);
- one of ``accounts`` customer accounts.

Money stays Decimal (strings on the wire).
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

__all__ = ["Mix", "popularity_weights"]

_CENT = Decimal("0.01")


def popularity_weights(count: int, skew: float) -> list[float]:
    """Zipf-like weights for ranks 1..count (``skew`` 0 is uniform)."""
    return [1.0 / (rank ** skew) for rank in range(1, count + 1)]


@dataclass(frozen=True)
class Mix:
    """How orders are drawn; see the module docstring for each field."""

    skew: float = 1.1
    buy: float = 0.55
    limit: float = 0.2
    limit_offset_bps: tuple[float, float] = (-5.0, 50.0)
    quantity_median: float = 25.0
    quantity_sigma: float = 1.0
    quantity_max: int = 5000
    accounts: int = 5000
    symbols: tuple[str, ...] = ()
    """Fixed symbols; empty means the universe the price feed publishes."""
    fallback_price: Decimal = Decimal("100.00")
    """The quote used for a symbol the feed has no price for (a platform without our feed)."""

    def __post_init__(self) -> None:
        for name in ("buy", "limit"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        low, high = self.limit_offset_bps
        if low > high or not -5000 < low or not high < 5000:
            raise ValueError(f"limit_offset_bps must be [low, high] within ±5000, got {list(self.limit_offset_bps)}")
        if self.quantity_median < 1 or self.quantity_max < 1 or self.quantity_sigma < 0:
            raise ValueError("quantity_median and quantity_max must be 1 or more, quantity_sigma 0 or more")
        if self.accounts < 1 or self.skew < 0 or self.fallback_price <= 0:
            raise ValueError("accounts must be 1 or more, skew 0 or more, fallback_price above 0")

    def universe(self, quotes: Mapping[str, Decimal]) -> list[str]:
        """The symbols to trade: the fixed ones, else the feed's, else one placeholder."""
        if self.symbols:
            return list(self.symbols)
        # One symbol of the platform's default universe (runtime/platform/universe.csv; loadtests may not
        # import the runtime): an order for a symbol outside the universe would be refused with a 400.
        return list(quotes) or ["VOD.L"]

    def chooser(self, quotes: Mapping[str, Decimal]) -> SymbolChooser:
        """A popularity-weighted chooser over :meth:`universe` (build once per quote refresh)."""
        return SymbolChooser(self.universe(quotes), self.skew)

    def order(self, rng: random.Random, chooser: SymbolChooser, quotes: Mapping[str, Decimal],
              order_id: str) -> dict[str, Any]:
        """One order body for the intake API."""
        symbol = chooser.pick(rng)
        quote = quotes.get(symbol, self.fallback_price)
        side = "BUY" if rng.random() < self.buy else "SELL"
        quantity = round(self.quantity_median * math.exp(self.quantity_sigma * rng.gauss(0.0, 1.0)))
        body: dict[str, Any] = {
            "order_id": order_id,
            "account_id": f"acc-{rng.randrange(self.accounts)}",
            "symbol": symbol,
            "side": side,
            "quantity": min(max(1, quantity), self.quantity_max),
            "order_type": "MARKET",
            "quote_price": str(quote),
        }
        if rng.random() < self.limit:
            offset = Decimal(repr(rng.uniform(*self.limit_offset_bps))) / Decimal(10_000)
            factor = 1 + offset if side == "BUY" else 1 - offset
            limit = (quote * factor).quantize(_CENT, rounding=ROUND_HALF_EVEN)
            body["order_type"] = "LIMIT"
            body["limit_price"] = str(max(_CENT, limit))
        return body


class SymbolChooser:
    """Draws symbols by popularity rank in O(log n)."""

    def __init__(self, symbols: Sequence[str], skew: float) -> None:
        if not symbols:
            raise ValueError("no symbols to choose from")
        self.symbols = list(symbols)
        self._cumulative = list(itertools.accumulate(popularity_weights(len(self.symbols), skew)))

    def pick(self, rng: random.Random) -> str:
        point = rng.random() * self._cumulative[-1]
        return self.symbols[min(bisect.bisect_right(self._cumulative, point), len(self.symbols) - 1)]
