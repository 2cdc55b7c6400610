"""Output conventions (issue 12): help with examples and readable labels, -y wherever --yes is, whole ids in
narrow and piped tables, runs that fail fast without a terminal and stop cleanly on Ctrl-C, informed approvals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from io import StringIO

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tests.support.terminal import Terminal
from tradeops import __version__
from tradeops.cli import app
from tradeops.commands.output import Column, print_table
from tradeops.runbooks import engine
from tradeops.runbooks.audit import AuditLog
from tradeops.runbooks.identity import Identity
from tradeops.runbooks.store import ExecutionStore
from tradeops.runbooks.testing import install_roster, isolated_flags, write_operators
from tradeops.runtime.liability.ledger import Ledger
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.platform.aws import Aws

# ---- help -----------------------------------------------------------------------------------------

CHANGING = [("up",), ("down",), ("flags", "set"), ("runbook", "run"), ("runbook", "resume"), ("runbook", "approve"),
            ("runbook", "reject"), ("runbook", "withdraw"), ("runbook", "abort"), ("orders", "declare-void"),
            ("operators", "apply"), ("reimbursements", "approve"), ("reimbursements", "reject"),
            ("reimbursements", "export"), ("prices", "spike"), ("deploy",)]


def _commands(group=None, path=()):
    """Every command of the app, as (path, click command)."""
    import typer.main

    group = group or typer.main.get_command(app)
    for name, command in getattr(group, "commands", {}).items():
        yield (*path, name), command
        yield from _commands(command, (*path, name))


def _help(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_changing_command_has_an_example_in_its_help():
    """Each command that changes something shows an example in its --help."""
    for path in CHANGING:
        assert "Example" in _help(*path) and "tradeops " + path[0] in _help(*path), path


def test_help_labels_are_metavars_never_python_types():
    """No help text labels a parameter <str>, <bool>, <int> or <list[str]>; --port reads NAME=PORT."""
    for path, _ in _commands():
        text = _help(*path)
        assert not any(label in text for label in ("<str>", "<bool>", "<int", "<float>", "<list[")), (path, text)
    assert "NAME=PORT" in _help("up")


def test_yes_has_a_short_form_everywhere():
    """Every command that takes --yes also takes -y."""
    found = 0
    for path, command in _commands():
        for param in getattr(command, "params", []):
            if "--yes" in getattr(param, "opts", []):
                found += 1
                assert "-y" in param.opts, path
    assert found >= 10


def test_every_command_that_prints_a_result_takes_json():
    """--json is on every command that prints a result (up, down, flags set and approve included); only the
    CSV export, which writes a file, and the drill schedule export, whose output is a crontab or already JSON
    (--format eventbridge), have none."""
    leaves = [(path, command) for path, command in _commands() if not getattr(command, "commands", None)]
    missing = [path for path, command in leaves
               if "--json" not in [o for p in command.params for o in getattr(p, "opts", [])]]
    assert missing == [("reimbursements", "export"), ("drill", "schedule", "export")]
    assert {("up",), ("down",), ("flags", "set"), ("runbook", "approve")} <= {path for path, _ in leaves}


def test_version_and_shell_completion():
    """`--version` prints the version; shell completion can be installed."""
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"tradeops {__version__}"
    assert "--install-completion" in _help()


# ---- start-up -------------------------------------------------------------------------------------

# Every `tradeops` call pays what the CLI imports before its command runs (bench/README.md, "CLI start-up").
HEAVY = {"boto3", "botocore", "matplotlib", "jinja2", "weasyprint", "locust", "gevent"}

_RUN_AND_LIST = """
import json, sys
args = json.loads(sys.argv[1])
if args is None:
    import tradeops.cli
else:
    sys.argv = ["tradeops", *args]
    from tradeops.cli import main
    try:
        main()
    except SystemExit:
        pass
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _imported(tmp_path, args: list[str] | None) -> set[str]:
    """The top-level packages a fresh interpreter holds after importing the CLI (args None) or running
    `tradeops ARGS` with no stack up and no settings file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_"))}
    env["TRADEOPS_STATE_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", _RUN_AND_LIST, json.dumps(args)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip(), done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_importing_the_cli_imports_no_heavy_library(processes, tmp_path):
    """`import tradeops.cli` imports neither boto3, botocore, matplotlib, Jinja2, WeasyPrint, Locust nor gevent."""
    assert _imported(tmp_path, None) & HEAVY == set()


def test_version_and_status_without_a_stack_import_no_heavy_library(processes, tmp_path):
    """`tradeops --version` and `tradeops status --json` with no stack up import none of those, nor httpx, PyYAML,
    pydantic-settings or the asyncio it brings (the settings read their sources themselves)."""
    for args in (["--version"], ["status", "--json"]):
        assert _imported(tmp_path, args) & (HEAVY | {"httpx", "yaml", "pydantic_settings", "asyncio"}) == set(), args


def test_every_command_builds_and_none_imports_locust(processes, tmp_path):
    """Every command the root lists imports and builds (as --help does), and none pulls in Locust or gevent."""
    code = ("import sys; from tradeops.cli import COMMANDS, build_command; "
            "[build_command(name) for name in COMMANDS]; "
            "print([m for m in ('locust', 'gevent') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


# ---- tables ---------------------------------------------------------------------------------------

LONG_ID = "failover-20261126T090725Z-a1b2c3-drill-number-forty-two-of-the-winter-series"


def test_a_narrow_terminal_keeps_whole_ids_and_headers():
    """At 80 columns a table too wide for the screen shows each row as a block; every id and header is whole."""
    console = Console(file=StringIO(), width=80, force_terminal=True, color_system=None)
    columns = [Column("execution", ident=True), Column("runbook"), Column("status"), Column("executor", ident=True),
               Column("started"), Column("at step")]
    print_table(columns, [(LONG_ID, "failover", "waiting_approval", "arn:aws:iam::123456789012:user/alice",
                           "2026-11-26T09:07:25.123Z", "toggle-to-secondary")], console=console)
    text = console.file.getvalue()
    assert LONG_ID in text and "arn:aws:iam::123456789012:user/alice" in text
    assert all(len(line) <= 80 for line in text.splitlines())
    for header in ("execution", "executor", "at step"):
        assert f"{header}:" in text


def test_piped_tables_are_plain_text_with_whole_headers():
    """Piped, a table is plain text: whole headers, whole cells, no box drawing, values in words."""
    console = Console(file=StringIO(), width=80, force_terminal=False)
    print_table([Column("order", ident=True), Column("synthetic"), Column("price")],
                [(LONG_ID, False, None), ("o-2", True, Decimal("101.25"))], console=console)
    lines = console.file.getvalue().splitlines()
    assert lines[0].split() == ["order", "synthetic", "price"]
    assert lines[1].split() == [LONG_ID, "false", "none"] and lines[2].split() == ["o-2", "true", "101.25"]
    assert not any(ch in console.file.getvalue() for ch in "┃│━─")


# ---- against the emulator -------------------------------------------------------------------------

GUIDED = """\
name: guided
title: Pause and resume
version: 1
service: Retail trade order execution
impact_tolerance: {max_outage_minutes: 30}
steps:
  - id: manual-mode
    title: Routing is manual
    check: {probe: routing_mode, expect: manual}
  - id: quiesce
    title: Pause
    action: {name: set_processing, args: {state: paused}}
  - id: toggle
    title: Switch the active broker
    approval: {count: 1, roles: [ops-manager]}
    action: {name: set_active_broker, args: {provider: secondary}}
    rollback: restore
  - id: resume
    title: Resume
    action: {name: set_processing, args: {state: running}}
"""


@pytest.fixture(scope="module")
def env(aws_settings, tmp_path_factory):
    base = tmp_path_factory.mktemp("conventions")
    prefix = f"/cv{uuid.uuid4().hex[:8]}"
    settings = isolated_flags(aws_settings, prefix).model_copy(update={"operator": "alice"})
    aws = Aws(settings)
    install_roster(aws, write_operators(base / "operators.yaml", {"alice": ["duty-engineer"], "bob": ["ops-manager"],
                                                                  "fiona": ["finance"]}))
    path = base / "guided.yaml"
    path.write_text(GUIDED, encoding="utf-8")
    return {"settings": settings, "aws": aws, "dir": base, "runbook": path}


@pytest.fixture
def flags(env):
    f = Flags(env["aws"])
    f.set("processing", "running")
    f.set("mode", "manual")
    f.set("active", "primary")
    return f


def _env(env, **extra) -> dict[str, str]:
    s = env["settings"]
    out = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL", "COLUMNS"))}
    out.update({"TRADEOPS_AWS_ENDPOINT_URL": s.aws_endpoint_url, "TRADEOPS_NAME_PREFIX": s.name_prefix,
                "TRADEOPS_PARAM_PREFIX": s.param_prefix, "TRADEOPS_STATE_DIR": str(env["dir"] / "state"),
                "TRADEOPS_OPERATOR": "alice", "PYTHONUNBUFFERED": "1", **extra})
    return out


def _cli(env, *args, stdin=subprocess.DEVNULL, timeout=60, **extra) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tradeops", *args], env=_env(env, **extra), capture_output=True, text=True,
                          timeout=timeout, stdin=stdin, cwd=str(env["dir"]))


def test_history_and_reimbursements_keep_whole_ids_at_80_columns(env, flags):
    """At 80 columns, at a terminal and piped, `runbook history` and `reimbursements list` show whole ids."""
    eid = LONG_ID[:60] + uuid.uuid4().hex[:6]
    engine.run_execution(env["settings"], str(env["runbook"]), aws=env["aws"], identity=Identity("alice", "test"),
                         assume_yes=True, poll_seconds=0.05, approval_timeout=0.05, execution_id=eid)
    order_id = f"reimbursement-of-a-long-order-id-{uuid.uuid4().hex}"
    Ledger(env["aws"]).record_fill({
        "order_id": order_id, "account_id": "account-with-a-rather-long-reference-0001", "symbol": "SYM1",
        "side": "BUY", "quantity": 10, "order_type": "MARKET", "quote_price": Decimal("100"),
        "fill_price": Decimal("103"), "placed_at": "2026-11-26T09:00:00.000Z", "filled_at": "2026-11-26T09:01:00.000Z",
        "status": "FILLED", "synthetic": False, "provider": "primary", "filled_quantity": 10})
    for args, ident in ((("runbook", "history"), eid), (("reimbursements", "list"), order_id)):
        piped = _cli(env, *args, COLUMNS="80")
        assert piped.returncode == 0, piped.stderr
        assert ident in piped.stdout and "…" not in piped.stdout
        terminal = Terminal(["tradeops", *args], _env(env, COLUMNS="80"), cwd=env["dir"], cols=80)
        code, shown, _ = terminal.finish()
        assert code == 0 and ident in shown.replace("\n", "") and ident in shown and "…" not in shown


def test_resume_without_a_terminal_fails_fast_and_leaves_nothing_running(env, flags):
    """`runbook resume EXEC < /dev/null` exits 1 at once with one error line, before taking the execution over:
    no new audit record, no lease, and `history --json` does not show it running."""
    eid = f"cv-tty-{uuid.uuid4().hex[:6]}"
    outcome = engine.run_execution(env["settings"], str(env["runbook"]), aws=env["aws"],
                                   identity=Identity("alice", "test"), confirm=lambda prompt: False, poll_seconds=0.05,
                                   execution_id=eid)
    assert outcome.status == "stopped"
    records = len(AuditLog(env["aws"]).entries(eid))
    started = time.monotonic()
    done = _cli(env, "runbook", "resume", eid)
    assert time.monotonic() - started < 10
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: runbook resume") and "--yes" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert len(AuditLog(env["aws"]).entries(eid)) == records
    history = json.loads(_cli(env, "runbook", "history", eid, "--json").stdout)
    assert history["execution"]["status"] == "stopped" and "lease_owner" not in history["execution"]
    run = _cli(env, "runbook", "run", str(env["runbook"]))
    assert run.returncode == 1 and "no terminal to ask on" in run.stderr


def test_ctrl_c_at_a_prompt_leaves_the_execution_resumable(env, flags):
    """Ctrl-C at the confirmation prompt stops the run as resumable, says how to resume, and the resume finishes."""
    eid = f"cv-ctrlc-{uuid.uuid4().hex[:6]}"
    terminal = Terminal(["tradeops", "runbook", "run", str(env["runbook"]), "--execution-id", eid], _env(env),
                        cwd=env["dir"])
    terminal.read_until("Run set_processing(state=paused)?")
    terminal.proc.send_signal(signal.SIGINT)
    code, _, err = terminal.finish()
    assert code == 130, err
    assert f"`tradeops runbook resume {eid}` continues from there" in err and "Traceback" not in err
    meta = ExecutionStore(env["aws"]).meta(eid)
    assert meta["status"] == "stopped" and "lease_token" not in meta
    assert Flags(env["aws"]).read().processing == "running"
    resumed = Terminal(["tradeops", "runbook", "resume", eid], _env(env), cwd=env["dir"])
    resumed.read_until("Run set_processing(state=paused)?")
    resumed.type("y\n")
    resumed.read_until("— waiting")  # the approval wait shows how long it has waited, of how long
    resumed.proc.send_signal(signal.SIGINT)
    code, shown, err = resumed.finish()
    assert code == 130 and "of 15 min" in shown and f"resume {eid}" in err
    assert ExecutionStore(env["aws"]).meta(eid)["status"] == "stopped"


def test_approve_shows_what_it_approves_and_asks(env, flags):
    """`approve` shows the step, its action and arguments, the executor, the runbook and its hash, and the
    approvals so far, then asks (--yes for scripts; no terminal and no --yes changes nothing); --json says it all."""
    eid = f"cv-approve-{uuid.uuid4().hex[:6]}"
    engine.run_execution(env["settings"], str(env["runbook"]), aws=env["aws"], identity=Identity("alice", "test"),
                         assume_yes=True, poll_seconds=0.05, approval_timeout=0.05, execution_id=eid)
    sha = ExecutionStore(env["aws"]).meta(eid)["runbook_sha256"]
    unasked = _cli(env, "runbook", "approve", eid, "toggle", TRADEOPS_OPERATOR="bob")
    assert unasked.returncode == 1 and "no terminal to ask on" in unasked.stderr
    assert ExecutionStore(env["aws"]).approvals(eid, "toggle") == ([], 0)
    terminal = Terminal(["tradeops", "runbook", "approve", eid, "toggle"], _env(env, TRADEOPS_OPERATOR="bob"),
                        cwd=env["dir"])
    terminal.read_until("[y/N]")
    terminal.type("n\n")
    code, shown, _ = terminal.finish()
    assert code == 1
    for fact in (f"step 3 of {eid}: Switch the active broker", f"guided v1 (sha256 {sha})", "executor:  alice",
                 "action:    set_active_broker(provider=secondary)", "approvals: none (0 of 1 needed)", "waiting"):
        assert fact in shown, (fact, shown)
    done = _cli(env, "runbook", "approve", eid, "toggle", "--yes", "--json", TRADEOPS_OPERATOR="bob")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["identity"], result["view"]["runbook_sha256"], result["view"]["action"]["name"]) == (
        "bob", sha, "set_active_broker")


def test_reject_needs_a_reason(env, flags):
    """`reject` without --reason is bad usage (exit 2) and records nothing."""
    eid = f"cv-reject-{uuid.uuid4().hex[:6]}"
    engine.run_execution(env["settings"], str(env["runbook"]), aws=env["aws"], identity=Identity("alice", "test"),
                         assume_yes=True, poll_seconds=0.05, approval_timeout=0.05, execution_id=eid)
    done = _cli(env, "runbook", "reject", eid, "toggle", "--yes", TRADEOPS_OPERATOR="bob")
    assert done.returncode == 2 and "--reason" in done.stderr
    assert ExecutionStore(env["aws"]).approvals(eid, "toggle") == ([], 0)


def test_a_missing_order_is_exit_1_and_times_have_one_format(env):
    """`orders show` of an unknown order is a failed operation (exit 1); a known one shows every time as
    UTC milliseconds with Z, and yes/no rather than Python values."""
    missing = _cli(env, "orders", "show", "no-such-order")
    assert missing.returncode == 1 and missing.stderr.startswith("error: no order")
    from tradeops.runtime.orderpath.orders import OrderRequest, OrderStore, new_order

    order, _ = OrderStore(env["aws"]).create(new_order(OrderRequest(
        order_id=f"cv-{uuid.uuid4().hex[:8]}", account_id="acc", symbol="SYM1", side="BUY", quantity=1,
        quote_price=Decimal("10"), placed_at="2026-11-26T09:07:25.5+01:00")))
    shown = _cli(env, "orders", "show", order["order_id"])
    assert shown.returncode == 0, shown.stderr
    assert "placed_at: 2026-11-26T08:07:25.500Z" in shown.stdout and "synthetic: no" in shown.stdout
    assert "False" not in shown.stdout and "True" not in shown.stdout


def test_down_json_with_nothing_up(processes, tmp_path):
    """`down --json` says whether it stopped anything (nothing up is not an error)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    env["TRADEOPS_STATE_DIR"] = str(tmp_path)
    done = subprocess.run(["tradeops", "down", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout) == {"stopped": False, "started_at": None}


def test_the_package_reads_its_version_only_when_asked(processes, tmp_path):
    """`import tradeops` (paid by every process of the stack) leaves the package metadata unread until something
    asks for `tradeops.__version__`, which is then the installed distribution's."""
    code = ("import sys, tradeops; before = 'importlib.metadata' in sys.modules; "
            "from importlib.metadata import version; "
            "print(before, tradeops.__version__ == version('tradeops'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "True"], done.stdout + done.stderr
