"""Files shipped inside the installed ``tradeops`` package: the template, runbooks, schemas, report templates.

Found through importlib.resources, so they are found from a wheel as well as from a checkout.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["package_file"]


def package_file(*parts: str) -> Path:
    """The shipped file (or folder) at ``parts`` under the package root, e.g. ``("deploy", "template.yaml")``."""
    return Path(str(files("tradeops").joinpath(*parts)))
