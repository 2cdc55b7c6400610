"""tradeops: keeps order execution alive when a broker fails, and proves it to the regulator.

Installed, the whole project imports under this one name (the repository's top-level folders are
its subpackages; see docs/architecture.md):

- ``tradeops.runtime``: the order path and its monitors (``platform``, ``orderpath``, ``liability``,
  ``brokers``, ``stack``);
- ``tradeops.runbooks``: the runbook engine and the runbooks it ships;
- ``tradeops.experiments``, ``tradeops.loadtests``, ``tradeops.reports``: drills, load and evidence;
- ``tradeops.cli`` and ``tradeops.commands``: the ``tradeops`` command.

:func:`discover` is what ``chaos discover tradeops --no-install`` calls: Chaos Toolkit looks for it on the
distribution's top-level package.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("tradeops")
except PackageNotFoundError:  # pragma: no cover - running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "discover"]


def discover(discover_system: bool = True) -> dict[str, Any]:
    """The drill activities of :mod:`tradeops.experiments.activities` with their argument and return types, and
    the running local stack (``discover_system``), for ``chaos discover tradeops --no-install``."""
    # Imported here: `import tradeops` is paid by every process of the stack, which never discovers anything.
    from tradeops.experiments.activities import discover as discover_activities

    return discover_activities(discover_system=discover_system)
