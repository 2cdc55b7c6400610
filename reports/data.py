"""The reports' data files, read and checked: the service, the mapping, the testing plan, the communication
strategy and the third parties.

They ship beside this module (``reports/*.yaml``, each with its JSON Schema ``*.schema.json``);
``--data DIR`` on the report commands reads any of them from DIR instead, so compliance can prepare a
change and check it (``tradeops report check-data DIR``) before it ships. A file is read strictly
(:mod:`tradeops.runtime.platform.yamlfiles`), then checked against its schema, then against the rules
a schema cannot say (a third party is never accountable in a RACI, a plan's experiment exists, a
communication's owner is a mapped person, ...). Every problem is one :class:`BadInput` line naming
the file, the line and the field: a missing or unknown field is named as such. Nothing is written
anywhere until every file is good.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from tradeops.runtime.platform import yamlfiles
from tradeops.runtime.platform.errors import BadInput
from tradeops.runtime.platform.packagedata import package_file

__all__ = ["DATA_FILES", "Catalogue", "load_catalogue", "template_resources"]

DATA_FILES = {"service": "service.yaml", "mapping": "mapping.yaml", "testing_plan": "testing-plan.yaml",
              "communications": "communications.yaml", "third_parties": "third-parties.yaml"}
"""Each part of the catalogue and the file it comes from."""

Catalogue = dict[str, Any]
"""``service.yaml``'s keys, plus ``mapping``, ``testing_plan``, ``communications`` and ``third_parties``."""

Path_ = tuple[str | int, ...]


def _lines(node: yaml.Node | None, path: Path_ = (), out: dict[Path_, int] | None = None) -> dict[Path_, int]:
    """The line of every key and item of a composed YAML document, by path."""
    out = {} if out is None else out
    if node is None:
        return out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out[(*path, str(key.value))] = key.start_mark.line + 1
            _lines(value, (*path, str(key.value)), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, i), out)
    return out


def _where(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the document"


def _problem(error: ValidationError) -> tuple[Path_, str]:
    """The path to name and the one-line problem of a schema error."""
    path: Path_ = tuple(error.absolute_path)
    at = _where(path)
    if error.validator == "required" and isinstance(error.instance, Mapping):
        missing = [f for f in error.validator_value if f not in error.instance]
        return path, f"{at}: missing field {missing[0]!r}"
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = set((error.schema.get("properties") or {}) if isinstance(error.schema, Mapping) else ())
        unknown = sorted(str(k) for k in error.instance if k not in known)
        name = unknown[0] if unknown else "?"
        return (*path, name), f"{at}: unknown field {name!r} (known: {', '.join(sorted(known))})"
    if error.validator == "enum":
        options = ", ".join(str(v) for v in error.validator_value)
        return path, f"{at}: {error.instance!r} is not one of {options}"
    return path, f"{at}: {error.message}"


def _first_error(errors: Iterable[ValidationError]) -> ValidationError | None:
    """The error a person should fix first: the earliest in the document, the most specific there."""
    found = sorted(errors, key=lambda e: ([str(p) for p in e.absolute_path], e.validator != "required"))
    return found[0] if found else None


def _read(part: str, data_dir: Path | None) -> tuple[Any, dict[Path_, int], str]:
    name = DATA_FILES[part]
    path = (data_dir / name) if data_dir is not None and (data_dir / name).is_file() else package_file("reports", name)
    shown = str(path) if data_dir is not None and path.parent == data_dir else f"reports/{name}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"{shown}: cannot read it ({exc.strerror})") from None
    yamlfiles.check_size(text, shown)
    try:
        doc, node = yamlfiles.load_node(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise BadInput(f"{shown}{line}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    lines = _lines(node)
    schema = json.loads(package_file("reports", name.replace(".yaml", ".schema.json")).read_text(encoding="utf-8"))
    error = _first_error(Draft202012Validator(schema).iter_errors(doc))
    if error is not None:
        path_, problem = _problem(error)
        raise BadInput(f"{shown}:{_line(lines, path_)}: {problem}")
    return doc, lines, shown


def _line(lines: Mapping[Path_, int], path: Path_) -> int:
    for end in range(len(path), -1, -1):
        if tuple(path[:end]) in lines:
            return lines[tuple(path[:end])]
    return 1


class _Refuse:
    """Raises the first rule a checked document breaks, naming its file, line and field."""

    def __init__(self, shown: str, lines: Mapping[Path_, int]) -> None:
        self.shown, self.lines = shown, lines

    def __call__(self, path: Path_, problem: str) -> BadInput:
        return BadInput(f"{self.shown}:{_line(self.lines, path)}: {_where(path)}: {problem}")


def _unique(items: Sequence[Mapping[str, Any]], key: str, refuse: _Refuse, where: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        value = str(item[key])
        if value in seen:
            raise refuse((where, i, key), f"{value!r} is listed twice")
        seen.add(value)


def _check_service(doc: Mapping[str, Any], refuse: _Refuse) -> None:
    _unique(doc["impact_tolerance"], "metric", refuse, "impact_tolerance")
    for name, phase in doc["phases"].items():
        parties, external = phase["raci"]["parties"], phase["raci"]["external"]
        for party in external:
            if party not in parties:
                raise refuse(("phases", name, "raci", "external"), f"{party!r} is not one of the parties")
        for i, row in enumerate(phase["raci"]["rows"]):
            where = ("phases", name, "raci", "rows", i)
            if len(row) != len(parties) + 1:
                raise refuse(where, f"{row[0]!r} has {len(row) - 1} cells for {len(parties)} parties")
            cells = dict(zip(parties, row[1:], strict=True))
            accountable = [p for p, cell in cells.items() if cell == "A"]
            outside = [p for p in accountable if p in external]
            if outside:
                raise refuse(where, f"{row[0]!r} makes {outside[0]} accountable: a third party may be responsible, "
                                    "consulted or informed, never accountable (the firm cannot delegate that)")
            if len(accountable) != 1:
                raise refuse(where, f"{row[0]!r} needs exactly one accountable party (A), it has {len(accountable)}")
    for name, scenario in doc["scenarios"].items():
        if scenario["phase"] not in doc["phases"]:
            raise refuse(("scenarios", name, "phase"), f"unknown phase {scenario['phase']!r}")


def _check_mapping(doc: Mapping[str, Any], refuse: _Refuse, resources: Iterable[str] | None) -> None:
    seen: dict[str, str] = {}
    for category in ("people", "processes", "technology", "facilities", "information"):
        for i, item in enumerate(doc[category]):
            if item["name"] in seen:
                raise refuse((category, i, "name"),
                             f"{item['name']!r} is mapped twice (also under {seen[item['name']]})")
            seen[item["name"]] = category
    shipped = {p.stem for p in package_file("runbooks").glob("*.yaml")}
    for i, item in enumerate(doc["processes"]):
        if item["runbook"] not in shipped:
            raise refuse(("processes", i, "runbook"), f"no runbook named {item['runbook']!r}")
    known = set(resources) if resources is not None else None
    for i, item in enumerate(doc["technology"]):
        if known is not None and item["resource"] and item["name"] not in known:
            raise refuse(("technology", i, "name"), f"{item['name']!r} is no resource of the template")


def _check_plan(doc: Mapping[str, Any], refuse: _Refuse) -> None:
    _unique(doc["scenarios"], "name", refuse, "scenarios")
    for i, item in enumerate(doc["scenarios"]):
        experiment = item["experiment"]
        if experiment is not None and not package_file("experiments", f"{experiment}.yaml").is_file():
            raise refuse(("scenarios", i, "experiment"), f"no experiment named {experiment!r} (experiments/)")
        if item.get("schedule") and experiment is None:
            raise refuse(("scenarios", i, "schedule"), "only a scenario with an experiment can be scheduled")


def _check_communications(doc: Mapping[str, Any], refuse: _Refuse, people: Iterable[str]) -> None:
    known = set(people)
    for i, item in enumerate(doc["messages"]):
        if item["owner"] not in known:
            raise refuse(("messages", i, "owner"), f"{item['owner']!r} is not a person of mapping.yaml "
                                                   f"({', '.join(sorted(known))})")


def load_catalogue(data_dir: Path | None = None, *, resources: Iterable[str] | None = None) -> Catalogue:
    """Every data file read and checked (see the module docstring); ``resources`` are the template's logical
    ids, to check the mapping's technology against (left unchecked when None)."""
    if data_dir is not None and not data_dir.is_dir():
        raise BadInput(f"--data {data_dir}: no such folder")
    docs: dict[str, Any] = {}
    for part in DATA_FILES:
        doc, lines, shown = _read(part, data_dir)
        refuse = _Refuse(shown, lines)
        if part == "service":
            _check_service(doc, refuse)
        elif part == "mapping":
            _check_mapping(doc, refuse, resources)
        elif part == "testing_plan":
            _check_plan(doc, refuse)
        elif part == "communications":
            _check_communications(doc, refuse, [p["name"] for p in docs["mapping"]["people"]])
        elif part == "third_parties":
            _unique(doc["parties"], "provider", refuse, "parties")
        docs[part] = doc
    catalogue: Catalogue = dict(docs["service"])
    catalogue.update(mapping=docs["mapping"], testing_plan=docs["testing_plan"],
                     communications=docs["communications"], third_parties=list(docs["third_parties"]["parties"]))
    return catalogue


def template_resources(template: Mapping[str, Any]) -> dict[str, str]:
    """The template's resources: logical id → type."""
    return {str(k): str((v or {}).get("Type")) for k, v in (template.get("Resources") or {}).items()}
