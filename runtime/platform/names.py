"""Physical names of the AWS resources, derived from the settings' prefixes.

The CloudFormation template in ``deploy/`` names every resource from the same two
parameters (``NamePrefix``, ``ParamPrefix``), so code and template agree without a lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

from tradeops.runtime.platform.settings import Settings

__all__ = ["Names", "names_for", "worker_id"]


def worker_id(host: str, pid: int) -> str:
    """A worker's id when its command line names none: unique per container (its host name) and process.

    Every container's main process is pid 1, so the pid alone would give every task of a service the
    same id, and their heartbeats (the fleet's in-flight counts a runbook drains on) would overwrite
    each other.
    """
    return f"worker-{host}-{pid}"


@dataclass(frozen=True)
class Names:
    prefix: str
    param_prefix: str

    @property
    def order_queue(self) -> str:
        return f"{self.prefix}-orders"

    @property
    def order_dlq(self) -> str:
        return f"{self.prefix}-orders-dlq"

    @property
    def orders_table(self) -> str:
        return f"{self.prefix}-orders"

    @property
    def exposure_table(self) -> str:
        return f"{self.prefix}-exposure"

    @property
    def reimbursements_table(self) -> str:
        return f"{self.prefix}-reimbursements"

    @property
    def executions_table(self) -> str:
        return f"{self.prefix}-executions"

    @property
    def decisions_table(self) -> str:
        """Four-eyes decisions and acting marks of guarded steps: written only by the approval gate's role."""
        return f"{self.prefix}-decisions"

    @property
    def heartbeats_table(self) -> str:
        return f"{self.prefix}-heartbeats"

    @property
    def events_table(self) -> str:
        return f"{self.prefix}-events"

    @property
    def audit_table(self) -> str:
        return f"{self.prefix}-audit"

    def audit_anchor_bucket(self, account: str) -> str:
        """The Object Lock bucket of the audit chain's anchors (S3 names are global: the account is in it)."""
        return f"{self.prefix}-audit-anchors-{account}"

    @property
    def price_stream(self) -> str:
        return f"{self.prefix}-prices"

    @property
    def alert_topic(self) -> str:
        return f"{self.prefix}-alerts"

    @property
    def approvals_topic(self) -> str:
        """Where approval requests go: the people who approve runbook steps subscribe to it."""
        return f"{self.prefix}-approvals"

    @property
    def operator_role(self) -> str:
        """The template's role for operations staff (its session name is bound to the caller's user name)."""
        return f"{self.prefix}-operator"

    @property
    def break_glass_role(self) -> str:
        """The template's break-glass role (MFA, a reason; its session name is bound to the caller's user name)."""
        return f"{self.prefix}-break-glass"

    @property
    def drill_task_role(self) -> str:
        """The runtime template's role of a scheduled drill's ECS task: only ECS tasks of this account assume it, so
        its sessions are a drill's automation, never a person (:func:`tradeops.runbooks.identity.identity_from_arn`)."""
        return f"{self.prefix}-drill-task"

    @property
    def metric_namespace(self) -> str:
        return "Tradeops"

    def broker_secret(self, provider: str) -> str:
        return f"{self.prefix}/broker/{provider}"

    # Control flags (docs/architecture.md, "Control flags").
    @property
    def processing_param(self) -> str:
        return f"{self.param_prefix}/processing"

    @property
    def mode_param(self) -> str:
        return f"{self.param_prefix}/routing/mode"

    @property
    def active_param(self) -> str:
        return f"{self.param_prefix}/routing/active"

    @property
    def trickle_param(self) -> str:
        return f"{self.param_prefix}/routing/trickle"

    # The shared roster of operators (identity → roles), and rosters proposed for four-eyes approval.
    @property
    def roster_param(self) -> str:
        return f"{self.param_prefix}/roster/current"

    def roster_proposal_param(self, digest: str) -> str:
        return f"{self.param_prefix}/roster/proposed/{digest[:16]}"

    # Index of the orders table by status and symbol.
    status_symbol_index: str = "status-symbol-index"
    # Sparse index of the orders under watch (``watch`` attribute: voided, executed twice).
    watch_index: str = "watch-index"


def names_for(settings: Settings) -> Names:
    return Names(prefix=settings.name_prefix, param_prefix=settings.param_prefix)
