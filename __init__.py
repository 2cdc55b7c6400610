"""tradeops: keeps order execution alive when a broker fails, and proves it to the regulator.

Installed, the whole project imports under this one name (the repository's top-level folders are
its subpackages; see docs/architecture.md):

- ``tradeops.runtime``: the order path and its monitors (``platform``, ``orderpath``, ``liability``,
  ``brokers``, ``stack``);
- ``tradeops.runbooks``: the runbook engine and the runbooks it ships;
- ``tradeops.experiments``, ``tradeops.loadtests``, ``tradeops.reports``: drills, load and evidence;
- ``tradeops.cli`` and ``tradeops.commands``: the ``tradeops`` command.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tradeops")
except PackageNotFoundError:  # pragma: no cover - running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
