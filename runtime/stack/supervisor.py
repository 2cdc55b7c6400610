"""The embedded local stack: a supervisor that starts every component on 127.0.0.1.

`tradeops up` launches ``python -m tradeops.runtime.stack.supervisor`` as a detached session leader
(`up --foreground` runs it inside the `tradeops` process, in its caller's process group); the
supervisor starts the AWS emulator, deploys ``deploy/`` into it, then starts the brokers and the
runtime processes in stages (:mod:`.plan`: a stage's components together, once the stage before answers), and
writes the stack state file once every component answers its health check.
Every component gets a parent-death signal (PR_SET_PDEATHSIG), so none outlives its supervisor.

`tradeops down` (:func:`stop`) signals the supervisor alone. The supervisor stops the callers first
(intake, monitor, canary, audit anchorer, workers) while what they call still answers, then the
services they call (brokers, price feed), then the emulator the feed publishes to, each with 5 s of grace.
Whatever of the stack is still alive 15 s after the signal is killed: the whole process group of a
detached stack, only the recorded processes of a foreground one (its group is its caller's).

With ``TRADEOPS_FAULT_PROXY=true`` a fault proxy (:mod:`tradeops.runtime.brokers.proxy`) starts in front
of each broker, simulated or real, and the workers call the proxies: drills can then break a real
network path (the ``proxy`` fault backend). The state file records each broker's proxy beside it.

With ``TRADEOPS_ENFORCE=true`` (``tradeops up --enforce``) the emulator checks IAM, and everything signs as a
principal of :mod:`.principals` (the deployer, the people, the gate, the runtime); the approval gate then runs as
a component, and the state file records its URL and the keys file.

On AWS (``--aws``) no emulator starts, and the brokers and the price feed are real: the brokers' endpoints
come from the settings and their keys from Secrets Manager (:func:`check_real_brokers` proves both
before anything starts), and the prices are whatever the firm's feed puts on the price stream. A
sandbox that wants the simulators there asks for them (:class:`Simulated`, ``--sim-brokers``,
``--sim-prices``); the state file records which is which, and `tradeops status` shows it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tradeops.runtime.orderpath.providers import make_provider
from tradeops.runtime.orderpath.routing import PROVIDERS
from tradeops.runtime.platform.aws import Aws, aws_errors, error_code
from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.errors import ConfigError, StackError, TradeopsError
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import Settings, load_settings
from tradeops.runtime.platform.statefile import clear_state, pid_alive, read_state, write_state
from tradeops.runtime.stack import principals
from tradeops.runtime.stack.deploy import deploy_stack
from tradeops.runtime.stack.health import heartbeat_check
from tradeops.runtime.stack.plan import (
    MODULES,
    SERVICES,
    Simulated,
    on_free_ports,
    plan,
    proxy_component,
    python_command,
    stages,
)
from tradeops.runtime.stack.processes import (
    HOST,
    Component,
    check_port_free,
    free_port,
    kill_group,
    port_free,
    reap_group,
    reap_pids,
    stop_process,
    stop_processes,
)

__all__ = ["MODULES", "Component", "Simulated", "check_real_brokers", "free_port", "launch", "log_tail",
           "run_supervisor", "stop", "stop_process"]


def check_real_brokers(settings: Settings, aws: Aws) -> None:
    """Each real broker has an endpoint its adapter accepts and an API key; ConfigError (exit 2) names what is missing.

    The key is a setting or the broker's secret in Secrets Manager (the template creates both secrets; the firm
    puts each broker's key in it). Read here with the same call the workers make, so a key nobody can read stops
    `up` before anything starts rather than every worker at its start.
    """
    names = names_for(settings)
    for provider in PROVIDERS:
        env = f"TRADEOPS_{provider.upper()}"
        url = settings.broker_url(provider)
        if not url:
            raise ConfigError(f"no endpoint for the {provider} broker: set {env}_URL (and {env}_WIRE), "
                              "or run simulated brokers with --sim-brokers")
        make_provider(provider, settings.broker_wire(provider), url, api_key=None, connect_timeout=1,
                      read_timeout=1).close()  # an unknown wire or a URL that is not http(s) is a ConfigError
        if getattr(settings, f"{provider}_api_key"):
            continue
        secret = names.broker_secret(provider)
        with aws_errors(f"read the {provider} broker's key"):
            try:
                key = aws.secrets.get_secret_value(SecretId=secret).get("SecretString")
            except Exception as exc:  # only "no such secret" is bad input; aws_errors words the rest
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                key = None
        if not key:
            raise ConfigError(f"no API key for the {provider} broker: no secret {secret} in Secrets Manager (deploy "
                              f"the template and put the broker's key in it), or set {env}_API_KEY")


class Supervisor:
    """Starts, watches and stops the components; owns the state file while it runs."""

    def __init__(self, settings: Settings, *, workers: int, local: bool, ports: dict[str, int | None],
                 simulate: Simulated = Simulated(), people: tuple[str, ...] = ()):
        self.settings = settings
        self.workers = workers
        self.local = local
        self.enforce = local and settings.enforce
        self.people = people
        self._gate_key: dict[str, str] = {}
        self.ports = ports
        self.simulate = simulate
        self.components: list[Component] = []
        self.stopping = threading.Event()
        self.log_dir = settings.state_dir / "logs"
        self.state: dict[str, Any] = {}
        self._base_env: dict[str, str] = {}

    def _save(self, **changes: Any) -> None:
        self.state.update(changes)
        write_state(self.settings.state_file, self.state)

    def _wait_healthy(self, comp: Component, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping.is_set():
            if comp.proc is not None and comp.proc.poll() is not None:
                tail = log_tail(self.log_dir / f"{comp.name}.log")
                raise StackError(f"{comp.name} exited with code {comp.proc.returncode} while starting"
                                 + (f": {tail}" if tail else ""))
            if comp.healthy(timeout=0.5):
                return
            time.sleep(0.1)
        if self.stopping.is_set():
            raise StackError("interrupted while starting")
        raise StackError(f"{comp.name} did not answer its health check within {timeout:.0f}s")

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for old_log in self.log_dir.glob("*.log"):  # each run's logs start empty
            old_log.unlink()
        self.state = {
            "status": "starting", "supervisor_pid": os.getpid(), "pgid": os.getpgid(0),
            "started_at": iso(), "local": self.local,
            "region": self.settings.region, "name_prefix": self.settings.name_prefix,
            "param_prefix": self.settings.param_prefix, "log_dir": str(self.log_dir),
            "aws_endpoint": None, "brokers": {}, "intake": None, "components": {},
            "price_stream": names_for(self.settings).price_stream,
        }
        self._save()
        # The emulator's endpoint reaches the children as TRADEOPS_AWS_ENDPOINT_URL; on AWS, boto3's own
        # AWS_ENDPOINT_URL (a VPC endpoint, or an emulator standing in for AWS) is the operator's choice and stays.
        base_env = {k: v for k, v in os.environ.items() if not (self.local and k.startswith("AWS_ENDPOINT_URL"))}
        base_env["PYTHONUNBUFFERED"] = "1"
        if self.local:
            port = self.ports.get("aws") or free_port()
            if not self.ports.get("aws") and not port_free(port):  # taken since it was picked: pick again
                port = free_port()
            check_port_free("aws", port)
            endpoint = f"http://{HOST}:{port}"
            aws_comp = Component(name="aws", argv=python_command("-m", MODULES["aws"], "-H", HOST, "-p", str(port)),
                                 health_url=f"{endpoint}/moto-api/", info={"url": endpoint})
            if self.enforce:  # IAM access control on once the admin is made (runtime/stack/principals.py)
                aws_comp.env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(principals.NO_AUTH_REQUESTS)
            self._wait_ready(self._launch(aws_comp, base_env), timeout=30)
            self.settings = self.settings.model_copy(update={"aws_endpoint_url": endpoint})
            base_env.update({"TRADEOPS_AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                             "AWS_SECRET_ACCESS_KEY": "testing"})
            base_env.pop("AWS_SESSION_TOKEN", None)
            if self.enforce:
                self._save(aws_endpoint=endpoint, stage="making the admin user")
                self.settings, admin = principals.as_admin(self.settings)
            self._save(aws_endpoint=endpoint, stage="deploying the template")
            try:
                deploy_stack(Aws(self.settings), self.settings)
            except TradeopsError as exc:
                raise StackError(f"deploy: {exc}") from None
            except Exception as exc:  # the emulator answering garbage is still a failed deploy
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise StackError(f"deploy: the emulator refused the template ({type(exc).__name__}"
                                 f"{': ' + first[:200] if first else ''})") from None
            self._save(deployed_at=iso())
            if self.enforce:
                self._make_principals(base_env, admin)
        base_env["TRADEOPS_REGION"] = self.settings.region
        token = os.environ.get("TRADEOPS_INTAKE_TOKEN") or self._intake_token()
        base_env["TRADEOPS_INTAKE_TOKEN"] = token
        keys = self._broker_keys()
        self._base_env = base_env
        if not self.simulate.brokers:
            for real in PROVIDERS:  # checked before the start (check_real_brokers)
                url, wire = str(self.settings.broker_url(real)), self.settings.broker_wire(real)
                self.state["brokers"][real] = {"url": url, "wire": wire, "control": None, "simulated": False}
                base_env[f"TRADEOPS_{real.upper()}_URL"] = url
                base_env[f"TRADEOPS_{real.upper()}_WIRE"] = wire
        real_brokers = {p: str(self.settings.broker_url(p)) for p in PROVIDERS} if not self.simulate.brokers else {}
        if self.settings.fault_proxy:
            base_env["TRADEOPS_FAULT_PROXY"] = "true"
        components = plan(self.ports, workers=self.workers, simulate=self.simulate,
                          fault_proxy=self.settings.fault_proxy, real_brokers=real_brokers, gate=self.enforce)
        for group in stages(components):  # a stage starts together, once the stages before it answer
            started = [self._launch(self._prepared(comp, keys), base_env) for comp in group]
            for comp in started:
                self._wait_ready(comp, timeout=30)
                self._took_up(comp, base_env)
        self._save(status="ready", ready_at=iso(), stage="ready")

    def _make_principals(self, base_env: dict[str, str], admin: dict[str, str]) -> None:
        """The gate, the runtime and the people (runtime/stack/principals.py); the components sign as the runtime."""
        self._save(stage="making the principals")
        path = self.settings.state_dir / "keys.json"
        made = principals.make_principals(Aws(self.settings), self.people, admin=admin, keys_file=path)
        self._gate_key = made["gate"]
        base_env.update(principals.signing_env(made["runtime"]))
        self._save(enforce=True, keys_file=str(path), people=sorted(made["people"]))

    def _intake_token(self) -> str:
        """A fresh bearer token for the intake API, kept beside the state, readable only by the user."""
        token = secrets.token_urlsafe(32)
        path = self.settings.state_dir / "intake-token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
        os.chmod(path, 0o600)
        self.state["intake_token_file"] = str(path)
        return token

    def _broker_keys(self) -> dict[str, str]:
        """Broker API keys from Secrets Manager (created by the template); never logged."""
        if not self.local:
            return {}
        aws, names = Aws(self.settings), names_for(self.settings)
        return {p: aws.secrets.get_secret_value(SecretId=names.broker_secret(p))["SecretString"]
                for p in ("primary", "secondary")}

    def _prepared(self, comp: Component, keys: dict[str, str]) -> Component:
        """``comp`` as it starts: following its broker to the ports that broker started on, on free ports, with the
        broker key, principal or heartbeat check it needs."""
        upstream = self.state["brokers"].get(comp.info.get("proxy_for"), {}).get("url")
        if upstream and comp.info["upstream"] != upstream:
            # Its broker moved to other ports when it started (on_free_ports): the proxy follows.
            comp = proxy_component(comp.info["proxy_for"], upstream, comp.info["seed"])
        comp = on_free_ports(comp)
        provider = comp.info.get("provider")
        if provider and keys.get(provider):
            comp.env["TRADEOPS_SIM_API_KEY"] = keys[provider]
        if comp.name == "gate":
            # The gate runs as its own principal; the local stack is a drill environment (docs/drills.md).
            comp.env.update(principals.signing_env(self._gate_key), TRADEOPS_GATE_DRILL_FLAGS="true")
        if comp.name.startswith("worker-"):
            comp.heartbeat = heartbeat_check(Aws(self.settings), names_for(self.settings).heartbeats_table,
                                             comp.info["worker_id"], self.settings.heartbeat_seconds)
        return comp

    def _launch(self, comp: Component, base_env: dict[str, str]) -> Component:
        self.components.append(comp)
        comp.start(self.log_dir, base_env)
        self.state["components"][comp.name] = {"pid": comp.proc.pid if comp.proc else None,
                                               "health_url": comp.health_url, **comp.info}
        self._save(stage=f"starting {comp.name}")
        return comp

    def _wait_ready(self, comp: Component, timeout: float) -> None:
        self._wait_healthy(comp, timeout)
        # Recorded as it happens, so `tradeops up` can show its progress component by component.
        self.state["components"][comp.name]["ready_at"] = iso()
        self._save()

    def _took_up(self, comp: Component, base_env: dict[str, str]) -> None:
        """What the later stages learn of ``comp`` once it answers: where it is, in their environment and the
        state file."""
        if provider := comp.info.get("provider"):
            broker = {k: comp.info[k] for k in ("url", "control", "wire", "simulated")}
            self.state["brokers"][provider] = broker
            base_env[f"TRADEOPS_{provider.upper()}_URL"] = broker["url"]
            base_env[f"TRADEOPS_{provider.upper()}_WIRE"] = broker["wire"]
            base_env[f"TRADEOPS_{provider.upper()}_CONTROL_URL"] = broker["control"]
        if proxied := comp.info.get("proxy_for"):
            broker = self.state["brokers"][proxied]
            broker.update(upstream=broker["url"], url=comp.info["url"], proxy=comp.info["proxy"])
            base_env[f"TRADEOPS_{proxied.upper()}_URL"] = comp.info["url"]
            base_env[f"TRADEOPS_{proxied.upper()}_PROXY_URL"] = comp.info["proxy"]
        if comp.name == "prices":
            self.state["prices"] = comp.info["url"]
            base_env["TRADEOPS_PRICES_URL"] = comp.info["url"]
        if comp.name == "gate":
            self.state["gate"] = comp.info["url"]
        if comp.name == "intake":
            self.state["intake"] = comp.info["url"]
            base_env["TRADEOPS_INTAKE_URL"] = comp.info["url"]

    def watch(self) -> None:
        """Restart components that ask for it when they die; return when asked to stop."""
        while not self.stopping.wait(0.5):
            for comp in self.components:
                if comp.restart and comp.proc is not None and comp.proc.poll() is not None:
                    # Back off a component that keeps crashing: 1 s, 2 s, 4 s ... up to 30 s after start.
                    if time.monotonic() - comp.started_at < min(2 ** comp.restarts, 30):
                        continue
                    comp.restarts += 1
                    comp.start(self.log_dir, self._base_env)
                    self.state["components"][comp.name]["pid"] = comp.proc.pid
                    self.state["components"][comp.name]["restarts"] = comp.restarts
                    self._save()

    def stop_all(self, grace: float = 5.0) -> None:
        """Stop the callers together, then the services they call (:data:`SERVICES`), the emulator last (the price
        feed, a service the monitor calls, publishes to it)."""
        for tier in (0, 1, 2):
            stop_processes([c.proc for c in self.components if c.proc is not None
                            and (2 if c.name == "aws" else int(c.name in SERVICES)) == tier], grace)


def log_tail(path: Path, lines: int = 1) -> str:
    """The last ``lines`` lines of a log file joined into one (at most 300 characters), for an error line."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[-300:]


def check_sources(settings: Settings, *, local: bool, simulate: Simulated) -> None:
    """Before anything starts: on AWS, real brokers need their endpoints and keys (ConfigError, exit 2)."""
    if not local and not simulate.brokers:
        check_real_brokers(settings, Aws(settings))


def run_supervisor(settings: Settings, *, workers: int = 2, local: bool = True,
                   ports: dict[str, int | None] | None = None, simulate: Simulated = Simulated(),
                   people: tuple[str, ...] = (),
                   on_ready: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Run the stack in this process until SIGTERM/SIGINT. Returns the exit code.

    ``people``: on an emulator that enforces IAM (``settings.enforce``), the user names of the people to make
    IAM users for. Raises ConfigError before anything starts when real brokers lack an endpoint or a key, or an
    enforcing stack has no people."""
    simulate = simulate if not local else Simulated()
    check_sources(settings, local=local, simulate=simulate)
    principals.check_people(settings, local=local, people=people)
    sup = Supervisor(settings, workers=workers, local=local, ports=ports or {}, simulate=simulate, people=people)

    def _on_signal(signum: int, _frame: Any) -> None:
        sup.stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        sup.start()
    except Exception as exc:  # any failure to start: stop what started, say why, exit 1
        sup.stop_all()
        reason = str(exc) if isinstance(exc, TradeopsError | OSError) else f"{type(exc).__name__}: {exc}"
        sup._save(status="failed", error=reason)
        print(f"stack failed: {reason}", file=sys.stderr)
        return 1
    if on_ready is not None:
        on_ready(sup.state)
    sup.watch()
    sup.stop_all()
    final = read_state(settings.state_file)
    if final and final.get("supervisor_pid") == os.getpid():
        clear_state(settings.state_file)
    return 0


def launch(settings: Settings, *, workers: int, local: bool, ports: dict[str, int | None],
           simulate: Simulated = Simulated(), people: tuple[str, ...] = (), timeout: float = 90.0,
           on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Start the supervisor detached and wait until the stack is ready (or failed).

    ``on_progress(state)`` is called whenever the state file changes while it starts (a component
    started or became healthy), so the caller can show progress component by component. On AWS,
    ``simulate`` says which simulators to start; real brokers are checked before anything starts."""
    state = read_state(settings.state_file)
    if state and pid_alive(state.get("supervisor_pid")):
        raise StackAlreadyUp(state)
    simulate = simulate if not local else Simulated()
    check_sources(settings, local=local, simulate=simulate)
    principals.check_people(settings, local=local, people=people)
    clear_state(settings.state_file)
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    argv = python_command("-m", MODULES["supervisor"], "--workers", str(workers))
    if not local:
        argv += ["--aws", *simulate.flags()]
    for name, port in ports.items():
        if port:
            argv += ["--port", f"{name}={port}"]
    for person in people:
        argv += ["--person", person]
    env = {**os.environ, "TRADEOPS_STATE_DIR": str(settings.state_dir)}
    if settings.enforce:  # asked for by `up --enforce`, not only the environment
        env["TRADEOPS_ENFORCE"] = "true"
    if settings.fault_proxy:  # asked for by the caller (a drill through the proxy backend), not only the environment
        env["TRADEOPS_FAULT_PROXY"] = "true"
    log = open(settings.state_dir / "supervisor.log", "ab")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    log.close()
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        state = read_state(settings.state_file)
        if state and state.get("supervisor_pid") == proc.pid:
            if on_progress is not None and state != seen:
                on_progress(state)
                seen = state
            if state.get("status") == "ready":
                return state
            if state.get("status") == "failed":
                proc.wait(15)
                clear_state(settings.state_file)
                raise StackError(state.get("error") or "the stack failed to start")
        if proc.poll() is not None:
            clear_state(settings.state_file)
            tail = log_tail(settings.state_dir / "supervisor.log")
            raise StackError(f"the stack supervisor exited with code {proc.returncode}: {tail}")
        time.sleep(0.1)
    kill_group(proc.pid)
    clear_state(settings.state_file)
    raise StackError(f"the stack did not become ready within {timeout:.0f}s")


class StackAlreadyUp(StackError):
    """`up` found a running stack."""

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__(f"the stack is already up (since {state.get('started_at')}, "
                         f"supervisor pid {state.get('supervisor_pid')})")
        self.state = state


def stop(settings: Settings) -> dict[str, Any] | None:
    """Stop the stack. Returns the state it had, or None.

    Only the supervisor is signalled: it stops its components in order (callers, then services; 5 s
    of grace each). Whatever of the stack outlives 15 s is killed. A detached stack (``up``) is its
    own process group and is killed as one. A foreground one (``up --foreground``) shares its group
    with whoever started it, a shell script for one, so only its own recorded processes are killed.
    """
    state = read_state(settings.state_file)
    if not state:
        return None
    pgid, supervisor_pid = int(state.get("pgid") or 0), int(state.get("supervisor_pid") or 0)
    own_group = bool(pgid) and pgid == supervisor_pid
    pids = [int(p) for p in [supervisor_pid, *(c.get("pid") for c in state.get("components", {}).values())] if p]
    if pid_alive(supervisor_pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(supervisor_pid, signal.SIGTERM)
        if own_group:
            reap_group(pgid, 15.0)
        else:
            reap_pids(pids, 15.0)
    elif own_group:
        # The supervisor is gone; make sure nothing of its group survived it. (A foreground stack's
        # components die with their supervisor: each has a parent-death signal.)
        kill_group(pgid, grace=2.0)
    clear_state(settings.state_file)
    return state


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tradeops.runtime.stack.supervisor")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--aws", action="store_true", help="use real AWS instead of the emulator")
    parser.add_argument("--sim-brokers", action="store_true", help="with --aws: simulated brokers, not the real ones")
    parser.add_argument("--sim-prices", action="store_true", help="with --aws: the simulated price feed")
    parser.add_argument("--port", action="append", default=[], metavar="NAME=PORT")
    parser.add_argument("--person", action="append", default=[], metavar="NAME",
                        help="with TRADEOPS_ENFORCE: a person to make an IAM user for (the operators file's)")
    args = parser.parse_args(argv)
    ports: dict[str, int | None] = {}
    for item in args.port:
        name, _, value = item.partition("=")
        ports[name] = int(value)
    try:
        settings = load_settings()
        return run_supervisor(settings, workers=args.workers, local=not args.aws, ports=ports,
                              simulate=Simulated(brokers=args.sim_brokers, prices=args.sim_prices),
                              people=tuple(args.person))
    except TradeopsError as exc:
        print(f"stack failed: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(_main())
