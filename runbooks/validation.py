"""Validating a runbook, total and before anything runs: every problem, each with its file and line.

First the JSON Schema that ships next to the runbooks (``schema.json``) for shape, then the rules
a schema cannot express: operations that exist, their arguments, unique step ids, parameter
references, rollbacks that can be done, and approval counts the roster can supply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from tradeops.runbooks import registry
from tradeops.runbooks.identity import Operators
from tradeops.runbooks.loader import (
    STEP_KINDS,
    Issue,
    Lines,
    Path_,
    Runbook,
    RunbookInvalid,
    line_for,
    parse_runbook,
    read_runbook_text,
    resolve_path,
    runbook_dir,
    sha256_text,
)
from tradeops.runbooks.params import BUILTIN_PARAMS, FULL_REF, coerce, refs, render
from tradeops.runtime.platform.errors import BadInput

__all__ = ["check_runbook", "load_runbook", "schema"]


@cache
def schema() -> dict[str, Any]:
    return json.loads((runbook_dir() / "schema.json").read_text(encoding="utf-8"))


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


def _schema_issues(file: str, doc: Any, lines: Lines) -> list[Issue]:
    issues: list[Issue] = []
    validator = jsonschema.Draft202012Validator(schema())
    for err in sorted(validator.iter_errors(doc), key=lambda e: (line_for(lines, tuple(e.absolute_path)),
                                                                  list(map(str, e.absolute_path)))):
        path = tuple(err.absolute_path)
        where = _where(doc, path)
        line = line_for(lines, path)
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
                issues.append(Issue(file, line_for(lines, (*path, extra)), f"{where}: unknown field '{extra}'"))
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

    def __init__(self, file: str, doc: dict[str, Any], lines: Lines,
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
                        self.values[name] = coerce(name, spec, spec["default"])
                    except BadInput as exc:
                        self.add(("parameters", name, "default"), f"parameters.{name}.default: {exc}")

    def add(self, path: Path_, reason: str) -> None:
        self.issues.append(Issue(self.file, line_for(self.lines, path), reason))

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
                    first_seen[sid] = line_for(self.lines, (*path, "id"))
            self.step(step, path)
        return self.issues

    def refs_ok(self, value: Any, path: Path_) -> bool:
        ok = True
        for name in refs(value):
            if name not in self.known:
                self.add(path, f"{self.where(path)}: unknown parameter '{name}' in ${{{name}}}")
                ok = False
        return ok

    def step(self, step: dict[str, Any], path: Path_) -> None:
        kinds = [k for k in STEP_KINDS if k in step]
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
            match = FULL_REF.match(when)
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
        pending = {k for k, v in args.items() if any(r not in self.values for r in refs(v))}
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
                value = render(bound, self.values) if all(r in self.values for r in refs(bound)) else 0
                if isinstance(value, bool) or not isinstance(value, int | float):
                    self.add((*path, "expect"), f"{self.where(path)}.expect: {cmp} needs a number, not {value!r}")
        for key in ("timeout",):
            if key in spec and self.refs_ok(spec[key], (*path, key)):
                if all(r in self.values for r in refs(spec[key])):
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
            if all(r in self.values for r in refs(approval["timeout"])):
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
    doc, lines, issues = parse_runbook(path, text)
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
    return Runbook(path=path, text=text, sha256=sha256_text(text), doc=doc), []



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
