"""Help labels people can read: the metavar they type (``NAME=PORT``, ``SECONDS``), never a Python type.

typer labels every parameter in ``--help`` with its annotation (``<str>``, ``<bool>``,
``<list[str]>``, even after the argument's own metavar). This replaces that one label, in one place:
a parameter with a metavar shows only the metavar; a flag shows nothing (it takes no value); any
other shows click's word for its type (``TEXT``, ``INTEGER``, ``NUMBER``). Imported by
:mod:`tradeops.cli` before the app is built.
"""

from __future__ import annotations

import re
from typing import Any

from typer.core import TyperArgument, TyperOption

__all__ = ["label"]

_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "bool": "", "Path": "FILE"}
_ORIGINAL: dict[type, Any] = {TyperOption: TyperOption.display_type_rich,
                              TyperArgument: TyperArgument.display_type_rich}


def _words(typer_label: str | None) -> str | None:
    """``<list[str]>`` → ``TEXT...``, ``<int range>`` → ``INTEGER``, ``<bool>`` → None."""
    if not typer_label:
        return None
    inner = typer_label.strip("<>").replace(" range", "")
    many = inner.startswith("list[")
    inner = re.sub(r"^list\[(.*)\]$", r"\1", inner)
    word = _WORDS.get(inner, inner.upper())
    return (word + ("..." if many else "")) or None


def label(param: Any, ctx: Any) -> str | None:
    """The label shown after a parameter's name in ``--help``."""
    if getattr(param, "metavar", None) is not None:
        return None if isinstance(param, TyperArgument) else str(param.metavar)
    if getattr(param, "is_flag", False):
        return None
    return _words(_ORIGINAL[type(param)](param, ctx=ctx))


TyperOption.display_type_rich = label  # type: ignore[method-assign,assignment]
TyperArgument.display_type_rich = label  # type: ignore[method-assign,assignment]
