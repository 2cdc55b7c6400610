"""Runbooks as documents: find, load, validate (with file and line), parameters.

The YAML document itself is the data model (as in chaostoolkit-lib): a ``Runbook`` keeps the
parsed mapping, the exact text and its SHA-256 (approvals are bound to it), and where each
element sits in the file so every problem is reported as ``file:line: reason``.

Validation is total and happens before anything runs: the JSON Schema that ships next to the
runbooks (``schema.json``) for shape, then the rules a schema cannot express — operations that
exist, their arguments, unique step ids, parameter references, rollbacks that can be done, and
approval counts the operators file can supply.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tradeops.runbooks import registry
from tradeops.runbooks.identity import Operators
from tradeops.runtime.platform import yamlfiles
from tradeops.runtime.platform.errors import BadInput, NotFound
from tradeops.runtime.platform.packagedata import package_file

__all__ = [
    "BUILTIN_PARAMS",
    "Issue",
    "Runbook",
    "RunbookInvalid",
    "check_runbook",
    "load_runbook",
    "parse_param_overrides",
    "read_runbook_text",
    "render",
    "resolve_params",
    "resolve_path",
    "runbook_dir",
    "schema",
    "sha256_text",
    "shipped_runbooks",
]

# Parameters every runbook can use without declaring them.
BUILTIN_PARAMS = ("execution_id", "runbook", "executor")
KINDS = ("check", "action", "manual")
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FULL_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Issue:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class RunbookInvalid(BadInput):
    """A runbook failed validation; ``issues`` holds every problem found."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        more = f" (and {len(issues) - 1} more; `tradeops runbook validate` lists them)" if len(issues) > 1 else ""
        super().__init__(f"invalid runbook: {issues[0]}{more}")


@dataclass(frozen=True)
class Runbook:
    path: Path
    text: str
    sha256: str
    doc: dict[str, Any]
    lines: Mapping[Path_, int] = field(repr=False)

    @property
    def name(self) -> str:
        return str(self.doc["name"])

    @property
    def title(self) -> str:
        return str(self.doc["title"])

    @property
    def version(self) -> str:
        return str(self.doc["version"])

    @property
    def service(self) -> str:
        return str(self.doc["service"])

    @property
    def impact_tolerance(self) -> dict[str, Any]:
        return dict(self.doc["impact_tolerance"])

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return dict(self.doc.get("parameters") or {})

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list(self.doc["steps"])

    def index_of(self, step_id: str) -> int:
        for i, step in enumerate(self.steps):
            if step["id"] == step_id:
                return i
        raise NotFound(f"runbook {self.name} has no step {step_id!r} (steps: "
                       f"{', '.join(s['id'] for s in self.steps)})")

    def step(self, step_id: str) -> dict[str, Any]:
        return self.steps[self.index_of(step_id)]

    def line_of(self, *path: str | int) -> int:
        return _line_for(self.lines, path)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def runbook_dir() -> Path:
    """Where the shipped runbooks (and schema.json) live, inside the installed package."""
    return package_file("runbooks")


def shipped_runbooks() -> list[Path]:
    return sorted(p for p in runbook_dir().glob("*.yaml") if not p.name.startswith("operators"))


def resolve_path(ref: str | Path) -> Path:
    """A shipped runbook by name (``failover``) or a file by path."""
    text = str(ref)
    if isinstance(ref, Path) or "/" in text or text.endswith((".yaml", ".yml")):
        path = Path(text)
        if not path.is_file():
            raise NotFound(f"runbook file {path} does not exist")
        return path
    path = runbook_dir() / f"{text}.yaml"
    if not path.is_file():
        names = ", ".join(p.stem for p in shipped_runbooks())
        raise NotFound(f"no runbook named {text!r} (shipped: {names})")
    return path


@cache
def schema() -> dict[str, Any]:
    return json.loads((runbook_dir() / "schema.json").read_text(encoding="utf-8"))


# ---- YAML with line numbers ---------------------------------------------------------------

def _line_map(node: yaml.Node, path: Path_, lines: dict[Path_, int], dupes: list[tuple[int, str]]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            k = key.value
            if k in seen:
                dupes.append((key.start_mark.line + 1, f"duplicate key {k!r}"))
            seen.add(k)
            lines[(*path, k)] = key.start_mark.line + 1
            _line_map(value, (*path, k), lines, dupes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _line_map(item, (*path, i), lines, dupes)


def _line_for(lines: Mapping[Path_, int], path: Path_) -> int:
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in lines:
            return lines[tuple(path[:n])]
    return 1


def _parse(path: Path, text: str) -> tuple[Any, dict[Path_, int], list[Issue]]:
    file = str(path)
    try:
        yamlfiles.check_size(text, "the runbook")
    except BadInput as exc:
        return None, {}, [Issue(file, 1, str(exc))]
    try:
        # Anchors and aliases refused, nesting bounded (yamlfiles): the line walk below cannot blow up.
        doc, node = yamlfiles.load_node(text)
    except yamlfiles.RefusedYaml as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        return None, {}, [Issue(file, line, f"refused: {exc.problem} (a runbook has no need of them)"
                                if "YAML a" in str(exc.problem) else f"refused: {exc.problem}")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc)
        return None, {}, [Issue(file, line, f"not valid YAML: {problem}")]
    lines: dict[Path_, int] = {(): 1}
    dupes: list[tuple[int, str]] = []
    if node is not None:
        _line_map(node, (), lines, dupes)
    return doc, lines, [Issue(file, line, reason) for line, reason in dupes]


# ---- parameters ---------------------------------------------------------------------------

def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield from _REF.findall(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def render(value: Any, params: Mapping[str, Any]) -> Any:
    """Substitute ``${name}``: a whole-string reference keeps the parameter's type."""
    if isinstance(value, str):
        full = _FULL_REF.match(value)
        if full:
            return params[full.group(1)]
        return _REF.sub(lambda m: str(params[m.group(1)]), value)
    if isinstance(value, dict):
        return {k: render(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, params) for v in value]
    return value


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(name: str, spec: Mapping[str, Any], raw: Any) -> Any:
    kind = spec.get("type", "string")
    try:
        if kind == "boolean":
            if isinstance(raw, bool):
                value: Any = raw
            elif str(raw).strip().lower() in _TRUE | _FALSE:
                value = str(raw).strip().lower() in _TRUE
            else:
                raise ValueError
        elif kind == "integer":
            if isinstance(raw, bool):
                raise ValueError
            value = int(str(raw).strip())
        elif kind == "number":
            if isinstance(raw, bool):
                raise ValueError
            value = float(str(raw).strip())
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
        else:
            value = str(raw)
    except ValueError:
        raise BadInput(f"parameter {name} must be a {kind}, not {raw!r}") from None
    if "enum" in spec and value not in spec["enum"]:
        raise BadInput(f"parameter {name} must be one of {', '.join(map(str, spec['enum']))}, not {raw!r}")
    return value


def parse_param_overrides(items: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` from the command line into a mapping."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise BadInput(f"--param expects NAME=VALUE, not {item!r}")
        out[name.strip()] = value
    return out


def resolve_params(runbook: Runbook, overrides: Mapping[str, Any] | None = None,
                   builtins: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Typed parameter values: declared defaults, then overrides, plus the built-ins."""
    declared = runbook.parameters
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        takes = ", ".join(sorted(declared)) or "no parameters"
        raise BadInput(f"runbook {runbook.name} has no parameter {unknown[0]!r} (it takes: {takes})")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in overrides:
            values[name] = _coerce(name, spec, overrides[name])
        elif "default" in spec:
            values[name] = _coerce(name, spec, spec["default"])
        else:
            raise BadInput(f"runbook {runbook.name} needs --param {name}=VALUE ({spec.get('description', '')})"
                           .rstrip(" ()"))
    values.update({k: v for k, v in (builtins or {}).items() if k in BUILTIN_PARAMS})
    return values


# ---- validation ---------------------------------------------------------------------------

def _where(doc: Any, path: Path_) -> str:
    if not path:
        return "runbook"
    if path[0] == "steps" and len(path) > 1 and isinstance(path[1], int):
        steps = doc.get("steps") if isinstance(doc, dict) else None
        sid = None
        if isinstance(steps, list) and path[1] < len(steps) and isinstance(steps[path[1]], dict):
            sid = steps[path[1]].get("id")
        head = f"step {path[1] + 1}" + (f" ({sid})" if sid else "")
        rest = ".".join(str(p) for p in path[2:])
        return f"{head} {rest}".rstrip() if rest else head
    return ".".join(str(p) for p in path)


def _schema_issues(file: str, doc: Any, lines: Mapping[Path_, int]) -> list[Issue]:
    issues: list[Issue] = []
    validator = jsonschema.Draft202012Validator(schema())
    for err in sorted(validator.iter_errors(doc), key=lambda e: (_line_for(lines, tuple(e.absolute_path)),
                                                                  list(map(str, e.absolute_path)))):
        path = tuple(err.absolute_path)
        where = _where(doc, path)
        line = _line_for(lines, path)
        kind = err.validator
        if kind == "required":
            match = re.search(r"'(.+?)' is a required property", err.message)
            missing = match.group(1) if match else err.message
            if missing == "timeout" and path and path[-1] == "verify":
                reason = f"{where}: verification without timeout (say how many seconds it may take to hold)"
            else:
                reason = f"{where}: missing field '{missing}'"
            issues.append(Issue(file, line, reason))
        elif kind == "additionalProperties" and isinstance(err.instance, dict):
            known = set(err.schema.get("properties", {}))
            for extra in sorted(set(err.instance) - known):
                issues.append(Issue(file, _line_for(lines, (*path, extra)), f"{where}: unknown field '{extra}'"))
        elif kind == "enum":
            allowed = ", ".join(map(str, err.validator_value))
            issues.append(Issue(file, line, f"{where}: must be one of {allowed}, not {err.instance!r}"))
        elif kind == "type":
            wanted = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
            issues.append(Issue(file, line, f"{where}: must be {wanted}, not {type(err.instance).__name__}"))
        elif kind == "pattern":
            issues.append(Issue(file, line, f"{where}: {err.instance!r} is not a valid name "
                                            "(lower-case words joined by '-')"))
        elif kind == "oneOf" and path and path[-1] == "rollback":
            issues.append(Issue(file, line, f"{where}: must be 'restore', 'none' or an action {{name, args}}"))
        elif kind == "oneOf" and path and path[-1] == "expect":
            issues.append(Issue(file, line, f"{where}: must be a value, or one of equals, lt, le, gt, ge, in"))
        elif kind == "minItems":
            issues.append(Issue(file, line, f"{where}: must not be empty"))
        else:
            issues.append(Issue(file, line, f"{where}: {err.message}"))
    return issues


class _Checker:
    """The rules the schema cannot express; collects every issue rather than stopping at one."""

    def __init__(self, file: str, doc: dict[str, Any], lines: Mapping[Path_, int],
                 operators: Operators | None, params: Mapping[str, Any] | None, executor: str | None) -> None:
        self.file = file
        self.executor = executor
        self.doc = doc
        self.lines = lines
        self.operators = operators
        self.issues: list[Issue] = []
        declared = doc.get("parameters")
        if not isinstance(declared, dict):
            declared = {}
        self.declared: dict[str, Any] = {k: v for k, v in declared.items() if isinstance(v, dict)}
        self.known = set(self.declared) | set(BUILTIN_PARAMS)
        # Values to check arguments with: the run's values, else the defaults that exist.
        if params is not None:
            self.values = dict(params)
        else:
            self.values = {}
            for name, spec in self.declared.items():
                if "default" in spec:
                    try:
                        self.values[name] = _coerce(name, spec, spec["default"])
                    except BadInput as exc:
                        self.add(("parameters", name, "default"), f"parameters.{name}.default: {exc}")

    def add(self, path: Path_, reason: str) -> None:
        self.issues.append(Issue(self.file, _line_for(self.lines, path), reason))

    def where(self, path: Path_) -> str:
        return _where(self.doc, path)

    def run(self) -> list[Issue]:
        steps = self.doc.get("steps")
        if not isinstance(steps, list):
            return self.issues
        first_seen: dict[str, int] = {}
        for i, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            path: Path_ = ("steps", i)
            sid = step.get("id")
            if isinstance(sid, str):
                if sid in first_seen:
                    self.add((*path, "id"), f"duplicate step id '{sid}' (first used at line {first_seen[sid]})")
                else:
                    first_seen[sid] = _line_for(self.lines, (*path, "id"))
            self.step(step, path)
        return self.issues

    def refs_ok(self, value: Any, path: Path_) -> bool:
        ok = True
        for name in _refs(value):
            if name not in self.known:
                self.add(path, f"{self.where(path)}: unknown parameter '{name}' in ${{{name}}}")
                ok = False
        return ok

    def step(self, step: dict[str, Any], path: Path_) -> None:
        kinds = [k for k in KINDS if k in step]
        if len(kinds) != 1:
            has = ", ".join(kinds) or "none"
            self.add(path, f"{self.where(path)}: a step needs exactly one of check, action or manual (has {has})")
        self.refs_ok({k: v for k, v in step.items() if k not in ("check", "action", "precondition", "verify",
                                                                 "rollback")}, path)
        if isinstance(step.get("check"), dict):
            self.probe_spec(step["check"], (*path, "check"))
        if isinstance(step.get("precondition"), dict):
            self.probe_spec(step["precondition"], (*path, "precondition"))
        if isinstance(step.get("verify"), dict):
            self.probe_spec(step["verify"], (*path, "verify"))
        op = None
        if isinstance(step.get("action"), dict):
            op = self.action_spec(step["action"], (*path, "action"))
        rollback = step.get("rollback")
        if rollback is not None:
            rpath = (*path, "rollback")
            if "action" not in step:
                self.add(rpath, f"{self.where(rpath)}: only an action step can have a rollback")
            elif rollback == "restore" and op is not None and op.restore_arg is None:
                self.add(rpath, f"{self.where(rpath)}: action {op.name} has no previous value to restore; "
                                "give a rollback action or 'none'")
            elif isinstance(rollback, dict):
                self.action_spec(rollback, rpath)
        when = step.get("when")
        if isinstance(when, str):
            wpath = (*path, "when")
            match = _FULL_REF.match(when)
            if not match:
                self.add(wpath, f"{self.where(wpath)}: must be ${{parameter}} naming a boolean parameter")
            elif match.group(1) in self.declared and self.declared[match.group(1)].get("type") != "boolean":
                self.add(wpath, f"{self.where(wpath)}: parameter '{match.group(1)}' is not a boolean")
        if isinstance(step.get("approval"), dict):
            self.approval(step["approval"], (*path, "approval"))

    def _operation(self, name: Any, kind: str, path: Path_) -> registry.Operation | None:
        if not isinstance(name, str):
            return None
        op = registry.get(name)
        if op is None:
            known = ", ".join(o.name for o in (registry.probes() if kind == "probe" else registry.actions()))
            self.add(path, f"{self.where(path)}: unknown {kind} '{name}' (known {kind}s: {known})")
            return None
        if op.kind != kind:
            self.add(path, f"{self.where(path)}: '{name}' is {'an action' if op.kind == 'action' else 'a probe'}, "
                           f"not {'an action' if kind == 'action' else 'a probe'}")
            return None
        return op

    def args(self, op: registry.Operation, args: Any, path: Path_) -> None:
        if args is None:
            args = {}
        if not isinstance(args, dict) or not self.refs_ok(args, path):
            return
        # Arguments naming a parameter without a value yet are checked when the run supplies it.
        pending = {k for k, v in args.items() if any(r not in self.values for r in _refs(v))}
        rendered = render({k: v for k, v in args.items() if k not in pending}, self.values)
        schema_ = dict(op.schema, required=[r for r in op.schema.get("required", []) if r not in pending])
        for err in jsonschema.Draft202012Validator(schema_).iter_errors(rendered):
            apath = (*path, *err.absolute_path)
            arg = ".".join(map(str, err.absolute_path))
            if err.validator == "required":
                match = re.search(r"'(.+?)' is a required property", err.message)
                reason = f"{op.name} needs argument '{match.group(1) if match else err.message}'"
            elif err.validator == "additionalProperties":
                extra = sorted(set(err.instance) - set(op.schema.get("properties", {})))
                reason = f"{op.name} takes no argument '{', '.join(extra)}' (takes: " \
                         f"{', '.join(op.schema.get('properties', {})) or 'none'})"
            elif err.validator == "enum":
                reason = f"argument '{arg}' of {op.name} must be one of " \
                         f"{', '.join(map(str, err.validator_value))}, not {err.instance!r}"
            else:
                reason = f"argument '{arg}' of {op.name}: {err.message}"
            self.add(apath, f"{self.where(path)}: {reason}")

    def probe_spec(self, spec: dict[str, Any], path: Path_) -> None:
        op = self._operation(spec.get("probe"), "probe", (*path, "probe"))
        if op is not None:
            self.args(op, spec.get("args"), (*path, "args"))
        expect = spec.get("expect")
        if not isinstance(expect, dict):
            self.refs_ok(expect, (*path, "expect"))
        elif len(expect) == 1:
            (cmp, bound), = expect.items()
            if cmp in ("lt", "le", "gt", "ge") and self.refs_ok(bound, (*path, "expect")):
                value = render(bound, self.values) if all(r in self.values for r in _refs(bound)) else 0
                if isinstance(value, bool) or not isinstance(value, int | float):
                    self.add((*path, "expect"), f"{self.where(path)}.expect: {cmp} needs a number, not {value!r}")
        for key in ("timeout",):
            if key in spec and self.refs_ok(spec[key], (*path, key)):
                if all(r in self.values for r in _refs(spec[key])):
                    value = render(spec[key], self.values)
                    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                        self.add((*path, key), f"{self.where(path)}.{key}: must be a number of seconds, "
                                               f"not {value!r}")

    def action_spec(self, spec: dict[str, Any], path: Path_) -> registry.Operation | None:
        op = self._operation(spec.get("name"), "action", (*path, "name"))
        if op is not None:
            self.args(op, spec.get("args"), (*path, "args"))
        return op

    def approval(self, approval: dict[str, Any], path: Path_) -> None:
        if "timeout" in approval and self.refs_ok(approval["timeout"], (*path, "timeout")):
            if all(r in self.values for r in _refs(approval["timeout"])):
                value = render(approval["timeout"], self.values)
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    self.add((*path, "timeout"), f"{self.where(path)}.timeout: must be a number of seconds above 0, "
                                                 f"not {value!r}")
        count, roles = approval.get("count"), approval.get("roles")
        if self.operators is None or not isinstance(count, int) or not isinstance(roles, list):
            return
        holders = self.operators.holders(r for r in roles if isinstance(r, str))
        # At run time the executor is known, and can never approve: they do not count.
        besides = f" besides the executor ({self.executor})" if self.executor in holders else ""
        holders = [h for h in holders if h != self.executor]
        if count > len(holders):
            who = f" ({', '.join(holders)})" if holders else ""
            self.add((*path, "count"),
                     f"{self.where(path)}: needs {count} approvers with role {' or '.join(map(str, roles))}, "
                     f"but the roster ({self.operators.source}) gives only {len(holders)}{besides}{who}")


def check_runbook(path: Path, text: str, *, operators: Operators | None = None,
                  params: Mapping[str, Any] | None = None,
                  executor: str | None = None) -> tuple[Runbook | None, list[Issue]]:
    """Every problem with a runbook text; the Runbook when there is none.

    ``params`` are a run's values (else the defaults); ``executor`` is left out of the approvers
    the operators file can supply.
    """
    file = str(path)
    doc, lines, issues = _parse(path, text)
    if issues and doc is None:
        return None, issues
    if not isinstance(doc, dict):
        return None, [*issues, Issue(file, 1, "a runbook is a mapping with name, title, version, service, "
                                              "impact_tolerance and steps")]
    issues += _schema_issues(file, doc, lines)
    issues += _Checker(file, doc, lines, operators, params, executor).run()
    issues.sort(key=lambda i: i.line)
    if issues:
        return None, issues
    return Runbook(path=path, text=text, sha256=sha256_text(text), doc=doc, lines=lines), []


def load_runbook(ref: str | Path, *, operators: Operators | None = None,
                 params: Mapping[str, Any] | None = None) -> Runbook:
    """Find, read and validate a runbook; raises RunbookInvalid listing every issue."""
    path = resolve_path(ref)
    text = read_runbook_text(path)
    runbook, issues = check_runbook(path, text, operators=operators, params=params)
    if issues:
        raise RunbookInvalid(issues)
    assert runbook is not None
    return runbook


def read_runbook_text(path: Path) -> str:
    """A runbook file's text; too large, unreadable or not UTF-8 is BadInput (one line) before any parsing."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(yamlfiles.MAX_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"cannot read runbook {path}: {exc.strerror}") from None
    if len(raw) > yamlfiles.MAX_BYTES:
        raise BadInput(f"runbook {path} is larger than {yamlfiles.MAX_BYTES // 1024} KiB; refused")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"runbook {path} is not UTF-8 text") from None
