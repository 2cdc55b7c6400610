"""Hostile YAML (issue 15): runbooks and operators files with aliases, anchors, deep nesting or too many bytes
are refused at once with one line and exit 2, before anything is expanded."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tradeops.runbooks.identity import load_operators
from tradeops.runbooks.validation import check_runbook, load_runbook
from tradeops.runtime.platform import yamlfiles
from tradeops.runtime.platform.errors import BadInput, ConfigError

# 425 bytes that expand to about 10^9 list items when aliases are followed.
ALIAS_BOMB = """\
name: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
title: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
version: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
service: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
impact_tolerance: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
description: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
steps: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
parameters: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
x: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
SELF_ALIAS = "name: &r [*r]\n"
DEEP = "steps: " + "[" * 5000 + "]" * 5000 + "\n"

HOSTILE = {"alias bomb": (ALIAS_BOMB, "anchors (&a) are not allowed"),
           "self alias": (SELF_ALIAS, "anchors (&r) are not allowed"),
           "deep nesting": (DEEP, "nested deeper than"),
           "too large": ("# " + "x" * (yamlfiles.MAX_BYTES + 10) + "\n", "refused")}


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    env["TRADEOPS_STATE_DIR"] = str(tmp_path / "state")
    return env


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_runbooks_are_refused_in_under_a_second(tmp_path, name):
    """Each hostile runbook is refused by the loader in under 1 s, with one reason naming file and line."""
    text, why = HOSTILE[name]
    path = tmp_path / "rb.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    runbook, issues = check_runbook(path, text)
    with pytest.raises(BadInput, match="refused"):
        load_runbook(path)
    assert time.perf_counter() - started < 1.0
    assert runbook is None and len(issues) == 1 and why in str(issues[0]) and str(issues[0]).startswith(f"{path}:")


@pytest.mark.parametrize("command", [("runbook", "validate"), ("runbook", "show"), ("runbook", "plan"),
                                     ("runbook", "run", "--yes")])
@pytest.mark.parametrize("name", ["alias bomb", "self alias"])
def test_every_runbook_command_refuses_them_with_exit_2(processes, tmp_path, command, name):
    """validate, show, plan and run each answer a hostile runbook with one line and exit 2, no traceback."""
    text, why = HOSTILE[name]
    path = tmp_path / "rb.yaml"
    path.write_text(text, encoding="utf-8")
    env = _env(tmp_path)
    env["TRADEOPS_AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"  # a target, never reached: the file is refused first
    started = time.monotonic()
    done = subprocess.run(["tradeops", *command[:2], str(path), *command[2:]], env=env, capture_output=True,
                          text=True, timeout=30)
    assert time.monotonic() - started < 10  # process start included; the refusal itself is under 1 s (above)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    # validate lists each file's problems on stdout (one line here); the others print one error line.
    lines = done.stdout.strip().splitlines() if command[1] == "validate" else done.stderr.strip().splitlines()
    assert len(lines) == 1 and why in lines[0]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_operators_files_are_refused(processes, tmp_path, name):
    """An operators file with aliases, deep nesting or too many bytes is a ConfigError (exit 2) naming its line,
    in under 1 s; so is `tradeops operators diff FILE`."""
    text, _ = HOSTILE[name]
    path = tmp_path / "operators.yaml"
    path.write_text(text.replace("name:", "operators:"), encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="refused"):
        load_operators(path)
    assert time.perf_counter() - started < 1.0
    done = subprocess.run(["tradeops", "operators", "diff", str(path)], env=_env(tmp_path), capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "refused" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_plain_runbooks_still_load():
    """The shipped runbooks have no anchors and load as before."""
    assert load_runbook("failover").name == "failover"
