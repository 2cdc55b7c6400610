"""Load scenarios are data: a YAML file holding the shape, the order mix and the thresholds.

The shipped scenarios live in ``loadtests/scenarios/`` (package data, so an installed wheel has
them); a scenario is named by its file stem (``steady``) or given as a path. Adding a scenario means
adding a file. Each one is validated against ``scenario.schema.json`` before anything runs, and
every problem is reported as ``FILE: FIELD: REASON`` (:class:`ScenarioError`, exit 2 at the CLI).

Parameters from the command line (``--rate 50``, ``--param every=20s``) replace the file's values
before validation, so they are checked by the same rules.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tradeops.loadtests.mix import Mix
from tradeops.loadtests.shapes import Shape
from tradeops.loadtests.thresholds import Threshold, ThresholdError, parse_threshold
from tradeops.loadtests.units import UnitError, parse_seconds

__all__ = [
    "PARAMETERS",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "new_run_id",
    "scenario_from_document",
    "scenarios_dir",
    "shipped_scenarios",
]

DEFAULT_DRAIN = 30.0
DEFAULT_USER_RATE = 1.0

_SHAPE_RATES = ("rate", "peak", "step", "multiple")
_SHAPE_DURATIONS = ("duration", "ramp", "decay", "at", "length", "every")
PARAMETERS: tuple[str, ...] = (*_SHAPE_RATES, *_SHAPE_DURATIONS, "user_rate", "drain")
"""What ``--param NAME=VALUE`` (and ``--rate``, ``--duration``, ``--peak``) may set."""


def new_run_id() -> str:
    """A load run's id, carried by every order id it places: ``load-20261126T095512-3f9a`` (sortable,
    and distinct for two runs started in the same second)."""
    return time.strftime("load-%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


class ScenarioError(ValueError):
    """A scenario that cannot run: unknown, unreadable, or breaking a rule (``FILE: FIELD: REASON``)."""

    exit_code = 2


def scenarios_dir() -> Path:
    """The folder of shipped scenarios (inside the installed package)."""
    return Path(str(files("tradeops.loadtests").joinpath("scenarios")))


def shipped_scenarios() -> list[str]:
    """Names of the shipped scenarios."""
    return sorted(p.stem for p in scenarios_dir().glob("*.yaml"))


def _schema() -> dict[str, Any]:
    text = files("tradeops.loadtests").joinpath("scenario.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@dataclass(frozen=True)
class Scenario:
    """A validated scenario with its parameters applied."""

    name: str
    description: str
    source: str
    shape: Shape
    mix: Mix
    user_rate: float
    drain: float
    thresholds: tuple[Threshold, ...]
    document: dict[str, Any]
    """The scenario as validated (parameters applied): what the Locust processes receive."""

    def to_json(self) -> str:
        return json.dumps({"source": self.source, "document": self.document}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Scenario:
        data = json.loads(text)
        return scenario_from_document(data["document"], source=data["source"])


def _resolve(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml", ".json") or candidate.parent != Path("."):
        if not candidate.is_file():
            raise ScenarioError(f"{name_or_path}: no such scenario file")
        return candidate
    shipped = scenarios_dir() / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise ScenarioError(f"unknown scenario {name_or_path!r} (shipped: {', '.join(shipped_scenarios())}; "
                            "or give a path to a YAML file)")
    return shipped


def _number(name: str, raw: str) -> float:
    text = raw.strip().removesuffix("/s")
    try:
        value = float(text)
    except ValueError:
        raise ScenarioError(f"--param {name}={raw!r}: not a number") from None
    return value


def apply_parameters(document: dict[str, Any], params: Mapping[str, str], source: str) -> dict[str, Any]:
    """The document with command-line parameters in place (validation comes after)."""
    doc: dict[str, Any] = json.loads(json.dumps(document))  # a deep copy of plain data
    for name, raw in params.items():
        if name not in PARAMETERS:
            raise ScenarioError(f"{source}: unknown parameter {name!r} (known: {', '.join(PARAMETERS)})")
        shape = doc.setdefault("shape", {})
        if not isinstance(shape, dict):
            break  # the validation that follows names the broken shape
        if name in _SHAPE_RATES:
            shape[name] = _number(name, raw)
        elif name in _SHAPE_DURATIONS:
            shape[name] = raw.strip()
        elif name == "user_rate":
            doc[name] = _number(name, raw)
        else:
            doc[name] = raw.strip()
    return doc


def _field(path: Sequence[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def scenario_from_document(document: Any, *, source: str) -> Scenario:
    """Validate a scenario document and build it; ScenarioError names the file, field and reason."""
    if not isinstance(document, dict):
        raise ScenarioError(f"{source}: a scenario must be a mapping (name, shape, mix, thresholds)")
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    if errors:
        error = jsonschema.exceptions.best_match(errors) or errors[0]
        reason = error.message
        if error.validator == "pattern" and "ms|s|m|h" in str(error.validator_value):
            reason = f"{error.instance!r} is not a duration (e.g. 30s, 500ms, 2m)"
        raise ScenarioError(f"{source}: {_field(list(error.absolute_path))}: {reason}")
    shape_doc = document["shape"]
    try:
        shape = Shape(kind=shape_doc["kind"], rate=float(shape_doc["rate"]),
                      **{k: float(shape_doc[k]) for k in ("peak", "multiple", "step") if k in shape_doc},
                      **{k: parse_seconds(shape_doc[k]) for k in _SHAPE_DURATIONS if k in shape_doc})
    except (ValueError, UnitError) as exc:
        raise ScenarioError(f"{source}: shape: {exc}") from None
    mix_doc = document.get("mix", {})
    quantity = mix_doc.get("quantity", {})
    symbols = mix_doc.get("symbols", "feed")
    low, high = mix_doc.get("limit_offset_bps", Mix.limit_offset_bps)
    try:
        mix = Mix(
            skew=float(mix_doc.get("skew", Mix.skew)), buy=float(mix_doc.get("buy", Mix.buy)),
            limit=float(mix_doc.get("limit", Mix.limit)),
            limit_offset_bps=(float(low), float(high)),
            quantity_median=float(quantity.get("median", Mix.quantity_median)),
            quantity_sigma=float(quantity.get("sigma", Mix.quantity_sigma)),
            quantity_max=int(quantity.get("max", Mix.quantity_max)),
            accounts=int(mix_doc.get("accounts", Mix.accounts)),
            symbols=() if symbols == "feed" else tuple(symbols),
            fallback_price=Decimal(str(mix_doc.get("fallback_price", Mix.fallback_price))),
        )
    except ValueError as exc:
        raise ScenarioError(f"{source}: mix: {exc}") from None
    thresholds = []
    for i, text in enumerate(document.get("thresholds", [])):
        try:
            thresholds.append(parse_threshold(text, source="scenario"))
        except ThresholdError as exc:
            raise ScenarioError(f"{source}: thresholds[{i}]: {exc}") from None
    try:
        drain = parse_seconds(document.get("drain", DEFAULT_DRAIN))
    except UnitError as exc:
        raise ScenarioError(f"{source}: drain: {exc}") from None
    return Scenario(name=document["name"], description=document.get("description", ""), source=source,
                    shape=shape, mix=mix, user_rate=float(document.get("user_rate", DEFAULT_USER_RATE)),
                    drain=drain, thresholds=tuple(thresholds), document=document)


def load_scenario(name_or_path: str, params: Mapping[str, str] | None = None) -> Scenario:
    """A shipped scenario by name, or a scenario file by path, with ``params`` applied and validated."""
    path = _resolve(name_or_path)
    source = path.name if path.parent == scenarios_dir() else str(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise ScenarioError(f"{source}: not valid YAML: {reason}") from None
    except OSError as exc:
        raise ScenarioError(f"{source}: cannot read: {exc.strerror}") from None
    if isinstance(document, dict) and params:
        document = apply_parameters(document, params, source)
    return scenario_from_document(document, source=source)
