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

from typing import Any

__all__ = ["__version__", "discover"]

__version__: str
"""The installed distribution's version, read on first use: every process of the stack imports this package,
and reading package metadata (importlib.metadata, which imports the email package) costs each of them 10 ms
or more for a string only `--version`, discovery and reports show."""


def __getattr__(name: str) -> Any:
    if name != "__version__":
        raise AttributeError(f"module 'tradeops' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("tradeops")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found


def discover(discover_system: bool = True) -> dict[str, Any]:
    """The drill activities of :mod:`tradeops.experiments.activities` with their argument and return types, and
    the running local stack (``discover_system``), for ``chaos discover tradeops --no-install``."""
    # Imported here: `import tradeops` is paid by every process of the stack, which never discovers anything.
    from tradeops.experiments.activities import discover as discover_activities

    return discover_activities(discover_system=discover_system)
