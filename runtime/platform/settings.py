"""One settings object for every process: environment (``TRADEOPS_*``) over an optional YAML file.

Precedence, highest first: explicit keyword arguments, ``TRADEOPS_*`` environment variables (their names in any
case), the YAML file named by ``TRADEOPS_CONFIG`` (or ``tradeops.yaml`` in the working directory), then the
defaults below. Against real AWS leave ``aws_endpoint_url`` unset: boto3's standard credential chain and endpoint
resolution apply.

The two sources are read here rather than through pydantic-settings: every field is one scalar, so a source is a
mapping of field name to text that pydantic then validates exactly as it validates keyword arguments, and
pydantic-settings' import (asyncio, its CLI and cloud secret sources) cost about 40 ms of every command's start,
a sixth of `tradeops status` with no stack up (bench/README.md, "CLI start-up").
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tradeops.runtime.platform.errors import BadInput, ConfigError
from tradeops.runtime.platform.packagedata import package_file

__all__ = ["ENV_PREFIX", "Settings", "load_settings"]

ENV_PREFIX = "TRADEOPS_"
"""A setting's variable is this and its field name, in any case (``TRADEOPS_REGION``, ``tradeops_region``)."""


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tradeops"


def _environment_values(fields: dict[str, Any]) -> dict[str, str]:
    """The settings the environment sets: each ``TRADEOPS_<FIELD>`` variable, by field name. A variable that names
    no setting (``TRADEOPS_CONFIG`` among them) is not one."""
    prefix = ENV_PREFIX.lower()
    values: dict[str, str] = {}
    for name, value in os.environ.items():
        key = name.lower()
        if key.startswith(prefix) and key[len(prefix):] in fields:
            values[key[len(prefix):]] = value
    return values


def _file_values() -> dict[str, Any]:
    """The settings the YAML file sets (``TRADEOPS_CONFIG``, else ``tradeops.yaml`` here when there is one). A file
    that cannot be read, is not YAML or is not a mapping is a ConfigError of one line; its keys are checked as
    settings with the rest."""
    explicit = os.environ.get("TRADEOPS_CONFIG")
    path = Path(explicit) if explicit else Path("tradeops.yaml")
    if not path.exists():
        if explicit:
            raise ConfigError(f"settings file {path} (TRADEOPS_CONFIG) does not exist")
        return {}
    from tradeops.runtime.platform import yamlfiles  # every command loads the settings; few have a file to read

    try:
        data = yamlfiles.load(path.read_text(encoding="utf-8"), f"settings file {path}")
    except OSError as exc:
        raise ConfigError(f"settings file {path} cannot be read: {exc.strerror or exc}") from None
    except BadInput as exc:
        raise ConfigError(str(exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"settings file {path} must be a mapping of setting: value")
    return data


class Settings(BaseModel):
    """Every tunable of tradeops. Field names map to ``TRADEOPS_<NAME>`` variables."""

    # Defaults are validated too (a default_factory's value is checked like any other); unknown keys are refused.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    def __init__(self, **values: Any) -> None:
        """The settings from ``values``, then the environment, then the settings file (module docstring)."""
        fields = type(self).model_fields
        super().__init__(**{**_file_values(), **_environment_values(fields), **values})

    # Which AWS the CLI acts on: None = the local stack when one is up (and nothing otherwise); "aws" =
    # real AWS through boto3's own resolution (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL); "local" = the
    # local stack only. `tradeops --aws` is the same as "aws".
    target: Literal["local", "aws"] | None = None
    # Where AWS is. None means real AWS through boto3's own resolution.
    aws_endpoint_url: str | None = None
    # The local stack's emulator with IAM access control on (`tradeops up --enforce`): every request signed by an
    # IAM user of its own holding the template's policies (runtime/stack/principals.py). Off: one shared test key.
    enforce: bool = False
    # The key the clients sign with against an emulator that enforces IAM (the supervisor gives each component its
    # principal's; a command takes TRADEOPS_OPERATOR's from the stack's keys file). Unset: the shared test key.
    emulator_access_key_id: str | None = Field(default=None, repr=False)
    emulator_secret_access_key: str | None = Field(default=None, repr=False)
    region: str = "eu-west-2"
    name_prefix: str = "tradeops"
    param_prefix: str = "/tradeops"
    stack_name: str = "tradeops"
    state_dir: Path = Field(default_factory=_default_state_dir)
    runs_dir: Path = Path("runs")
    template_path: Path | None = None

    # Where the brokers and the intake API are (filled in from the stack state on the local stack).
    primary_url: str | None = None
    primary_wire: str = "alpha"
    secondary_url: str | None = None
    secondary_wire: str = "beta"
    intake_url: str | None = None
    intake_token: str | None = None
    # Broker API keys: from Secrets Manager (<name_prefix>/broker/<provider>) unless set here.
    primary_api_key: str | None = Field(default=None, repr=False)
    secondary_api_key: str | None = Field(default=None, repr=False)
    operator: str | None = None
    # The local operators file: what `tradeops operators apply` seeds or proposes as the shared roster.
    operators_file: Path | None = None
    # Roles (names, comma-separated) whose trust policy binds the session name to the caller's IAM user
    # name, so that a session ARN of theirs names a person. The template's operator role is always one.
    operator_roles: str = ""
    # The AWS account tradeops is deployed in (12 digits): a person signed in through another account's roles
    # (an Identity Center role included) is refused. Unset: the account STS names for the caller.
    aws_account: str | None = Field(default=None, pattern=r"^\d{12}$")
    # The approval gate (runbooks/gateservice.py): when set, guarded changes and approval decisions go through it.
    gate_url: str | None = None
    # How long a caller waits for the gate's answer before the step stops as "the gate does not answer" (seconds).
    gate_timeout_seconds: float = Field(default=30.0, gt=0)
    # The gate's own: whether it sets a guarded flag for a drill identity without four-eyes (drill environments
    # only: the local stack, staging). Each change is audited and alerted. People's settings do not reach it.
    gate_drill_flags: bool = False
    # How long a four-eyes step waits for its approvers when its runbook does not say (seconds).
    approval_timeout_seconds: float = Field(default=900.0, gt=0)

    # Intake API timeouts (seconds): the whole request head, the whole body, and an idle keep-alive
    # connection. A client slower than these is cut off instead of holding a connection open.
    intake_header_timeout: float = Field(default=10.0, gt=0)
    intake_body_timeout: float = Field(default=10.0, gt=0)
    intake_idle_timeout: int = Field(default=5, ge=1)

    # Order queue.
    max_receive_count: int = Field(default=5, ge=1, le=1000)
    queue_visibility_seconds: int = Field(default=30, ge=1, le=43200)

    # Worker.
    worker_batch_size: int = Field(default=10, ge=1, le=10)
    worker_wait_seconds: int = Field(default=1, ge=0, le=20)
    # Orders one worker handles at once; the receive loop takes only as many as it has free threads.
    worker_concurrency: int = Field(default=20, ge=1, le=200)
    # The loop receives again once a batch is handled, or after this long if it is not (an order stuck on
    # a slow or silent broker must not hold up the orders behind it). Not a linger: it never delays.
    worker_batch_wait_ms: float = Field(default=100.0, ge=0, le=5000)
    # Latency first: the worker receives again as soon as a batch is handled and never waits for a
    # batch to fill. What it saves on SQS it saves on deletes instead: finished messages (their
    # orders are already final, so no customer waits for this) are deleted in batches of up to 10,
    # at the latest this long after they finished. 0 deletes them right after each batch.
    worker_delete_flush_ms: int = Field(default=250, ge=0, le=5000)
    worker_lease_seconds: int = Field(default=20, ge=1)
    heartbeat_seconds: float = Field(default=1.0, gt=0)
    flag_refresh_seconds: float = Field(default=0.5, gt=0, le=1.0)
    broker_connect_timeout: float = Field(default=1.0, gt=0)
    broker_read_timeout: float = Field(default=2.0, gt=0)

    # Circuit breaker (per broker, rolling window).
    breaker_window: int = Field(default=20, ge=1)
    breaker_min_calls: int = Field(default=5, ge=1)
    breaker_failure_rate: float = Field(default=0.5, gt=0, le=1)
    breaker_slow_ms: float = Field(default=1500.0, gt=0)
    breaker_slow_rate: float = Field(default=0.8, gt=0, le=1)
    breaker_open_seconds: float = Field(default=3.0, gt=0)
    breaker_half_open_probes: int = Field(default=2, ge=1)
    # Connections refused in a row that open the breaker at once (a refusal proves the broker down).
    breaker_refused_trip: int = Field(default=1, ge=1)
    health_probe_seconds: float = Field(default=1.0, gt=0)

    # In-flight watch (runtime/orderpath/suspicion.py): a broker is suspect when a call sent after its
    # last answer has waited longer than clamp(multiple x its recent p99, floor, ceiling); the
    # ceiling defaults to the broker read timeout. A suspect broker gets no new orders until its
    # breaker's probes close it again. broker_suspicion=false turns the watch off (benchmarks).
    broker_suspicion: bool = True
    suspect_multiple: float = Field(default=4.0, ge=1)
    suspect_floor_ms: float = Field(default=150.0, gt=0)
    suspect_ceiling_ms: float | None = Field(default=None, gt=0)
    suspect_min_samples: int = Field(default=5, ge=1)
    suspect_history: int = Field(default=200, ge=1)
    suspect_check_ms: float = Field(default=25.0, gt=0, le=1000)

    # Orders declared void stay under watch at the broker they were voided at; once it answers
    # again its workers ask it about them every void_watch_seconds (runtime/orderpath/voids.py).
    void_watch_seconds: float = Field(default=1.0, gt=0)
    # Deciding a double execution (`tradeops orders unwind`) needs two people above this notional (GBP).
    unwind_dual_approval: Decimal = Field(default=Decimal("10000"), ge=0)

    # The sweeper (runtime/orderpath/sweep.py, run by every worker): an ACCEPTED order untouched this long
    # has probably lost its message (the intake died between the put and the send) and is re-enqueued.
    sweep_age_seconds: float = Field(default=30.0, gt=0)

    # Canary orders: one synthetic order per broker every N seconds (0 = off).
    canary_seconds: float = Field(default=30.0, ge=0)
    # The audit chain's head is anchored outside the table every N seconds when it has moved (0 = off;
    # runbooks/anchor.py), besides at the end of every runbook execution. It bounds how long a record can
    # sit unanchored.
    audit_anchor_seconds: float = Field(default=300.0, ge=0)

    # Liability thresholds (GBP).
    threshold_order_pct: Decimal = Decimal("2")
    threshold_order_amount: Decimal = Decimal("500")
    threshold_total_amount: Decimal = Decimal("10000")
    threshold_oldest_age_seconds: float = 60.0
    # Held orders the monitor cannot price (symbol never priced) or prices only from a stale tick: their
    # notional at the quote, GBP. Above it is a breach like any other (0: any such order alerts).
    threshold_unpriced_amount: Decimal = Field(default=Decimal("0"), ge=0)
    threshold_stale_amount: Decimal = Field(default=Decimal("0"), ge=0)
    # Paging (runtime/liability/paging.py): what reaches the alert topic. The exact figures (exposure,
    # when a threshold was crossed) are never delayed; only the messages to people are damped.
    # A breach ends only below the threshold minus paging_margin_pct of it; it pages once it has lasted
    # paging_hold_down_seconds (at once at paging_immediate_multiple x the threshold); its recovery pages
    # once nothing has been breached for paging_recovery_seconds; breaches new since the last message
    # go out together at most every paging_group_seconds; an open breach is re-announced every
    # paging_repeat_seconds.
    paging_margin_pct: Decimal = Field(default=Decimal("10"), ge=0, lt=100)
    paging_hold_down_seconds: float = Field(default=2.0, ge=0)
    paging_immediate_multiple: Decimal = Field(default=Decimal("2"), gt=1)
    paging_recovery_seconds: float = Field(default=10.0, ge=0)
    paging_group_seconds: float = Field(default=5.0, ge=0)
    paging_repeat_seconds: float = Field(default=900.0, gt=0)
    # Brokers: any worker's breaker open (or its in-flight watch suspecting the broker) pages at once
    # (hold-down 0) for the whole fleet; the recovery pages once every worker has had it closed for
    # paging_broker_recovery_seconds, with the number of transitions; it says "flapping" when one worker's
    # breaker opened paging_broker_flapping times or more in that episode.
    paging_broker_hold_down_seconds: float = Field(default=0.0, ge=0)
    paging_broker_recovery_seconds: float = Field(default=30.0, ge=0)
    paging_broker_flapping: int = Field(default=2, ge=2)
    reimburse_auto_approve: Decimal = Decimal("50")
    reimburse_dual_approval: Decimal = Decimal("1000")

    # Price feed.
    price_ticks_per_second: float = Field(default=20.0, ge=0)
    price_seed: int = 7
    # The tradable universe the feed publishes, the intake accepts and the monitor prices (comma-separated
    # tickers; empty: the shipped LSE universe, runtime/platform/universe.csv).
    symbols: str = ""
    # Let the intake accept a symbol outside the universe (the monitor then reports such held orders as
    # `unpriced`, never as zero exposure). Off: the intake answers 400 naming the symbol.
    allow_unpriced_symbols: bool = False
    # A pending order whose symbol's last price is older than this is reported `stale_price` by the monitor.
    price_stale_seconds: float = Field(default=30.0, gt=0)
    prices_url: str | None = None  # the price publisher's control address (filled in from the stack state)
    primary_control_url: str | None = None
    secondary_control_url: str | None = None

    # Fault injection for drills (docs/architecture.md, "Faults"). fault_proxy: the brokers are reached through
    # tradeops fault proxies (runtime/brokers/proxy.py): the local stack starts one in front of each broker, and
    # the adapters read a proxy's own answers as the proxy's. The proxies' control addresses are filled in from
    # the stack state, or set here for proxies run elsewhere (staging, in front of a broker's sandbox).
    fault_proxy: bool = False
    primary_proxy_url: str | None = None
    secondary_proxy_url: str | None = None
    # How drills inject their faults: sim (the simulated brokers' /_sim/fault, the local stack's default),
    # proxy (the fault proxies) or fis (AWS Fault Injection Service, the runtime template's experiment
    # templates). Unset: sim on the local stack, elsewhere proxy when the proxies are known, else fis.
    fault_backend: Literal["sim", "proxy", "fis"] | None = None

    @property
    def symbol_list(self) -> list[str]:
        """The tradable universe's tickers: ``symbols``, or the shipped universe when it is empty."""
        configured = [s.strip() for s in self.symbols.split(",") if s.strip()]
        if configured:
            return list(dict.fromkeys(configured))
        from tradeops.runtime.platform.universe import shipped_universe  # it reads a package file: on demand

        return [i.ticker for i in shipped_universe()]

    @field_validator("param_prefix")
    @classmethod
    def _param_prefix_shape(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/"):
            raise ValueError("must start with '/' and not end with '/'")
        return value

    @property
    def state_file(self) -> Path:
        """The file `tradeops up` writes so that every other command finds the stack."""
        return self.state_dir / "stack.json"

    def broker_url(self, provider: str) -> str | None:
        return self.primary_url if provider == "primary" else self.secondary_url

    def broker_wire(self, provider: str) -> str:
        return self.primary_wire if provider == "primary" else self.secondary_wire

    def broker_proxy_url(self, provider: str) -> str | None:
        """The control address of the fault proxy in front of ``provider``, if one is known."""
        return self.primary_proxy_url if provider == "primary" else self.secondary_proxy_url

    @property
    def template(self) -> Path:
        if self.template_path is not None:
            return self.template_path
        return package_file("deploy", "template.yaml")


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation failures into one readable ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None
