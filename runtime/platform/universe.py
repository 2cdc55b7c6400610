"""The tradable universe: the symbols the price feed publishes, the intake accepts and the monitor prices.

One setting decides it (``symbols``, ``TRADEOPS_SYMBOLS``: comma-separated tickers); left empty it is
the shipped universe, ``universe.csv`` beside this module: LSE shares a UK retail platform lists, each
with a name and the GBP price its simulated walk starts from. A configured ticker the file does not
know still trades; its walk starts near 100.00 GBP (:mod:`tradeops.runtime.liability.prices`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache

from tradeops.runtime.platform.errors import ConfigError
from tradeops.runtime.platform.packagedata import package_file

__all__ = ["Instrument", "shipped_universe", "start_price"]


@dataclass(frozen=True)
class Instrument:
    ticker: str
    name: str
    start_price: Decimal  # GBP per share


@cache
def shipped_universe() -> tuple[Instrument, ...]:
    """The shipped instruments, in file order (read once)."""
    path = package_file("runtime", "platform", "universe.csv")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    instruments = []
    for n, row in enumerate(csv.DictReader(lines), start=2):
        try:
            price = Decimal(row["start_price"])
        except (InvalidOperation, TypeError, KeyError):
            raise ConfigError(f"{path}: row {n}: start_price is not a number") from None
        if not price.is_finite() or price <= 0:
            raise ConfigError(f"{path}: row {n}: start_price must be above 0")
        instruments.append(Instrument(ticker=row["ticker"].strip(), name=row["name"].strip(), start_price=price))
    return tuple(instruments)


def start_price(ticker: str) -> Decimal | None:
    """The shipped start price of ``ticker`` (GBP), or None for a ticker the file does not list."""
    return next((i.start_price for i in shipped_universe() if i.ticker == ticker), None)
