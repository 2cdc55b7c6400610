"""boto3 clients for every process, and the one place AWS errors become ours.

On the local stack the only difference from production is the endpoint URL; the emulator
gets fixed dummy credentials so that real ones are never sent to it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from tradeops.runtime.platform.errors import AwsError, StackError
from tradeops.runtime.platform.settings import Settings

__all__ = ["PROCESS_REQUESTS", "Aws", "RequestCounter", "aws_errors", "condition_failed", "error_code"]

_EMULATOR_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, else None."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


def condition_failed(exc: BaseException) -> bool:
    """Whether ``exc`` says a conditional write's condition did not hold (someone else wrote first).

    Covers a single conditional write (``ConditionalCheckFailedException``) and a transaction
    cancelled because one of its conditions failed.
    """
    code = error_code(exc)
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
        return not reasons or any(r.get("Code") == "ConditionalCheckFailed" for r in reasons)
    return False


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Map botocore's connection and client errors to AwsError/StackError with a readable line."""
    try:
        yield
    except botocore.exceptions.EndpointConnectionError as exc:
        raise StackError(f"{what}: cannot reach AWS at {exc.kwargs.get('endpoint_url')}"
                         " (is the stack up? `tradeops up`)") from None
    except botocore.exceptions.NoCredentialsError:
        raise AwsError(f"{what}: no AWS credentials found (standard boto3 credential chain)") from None
    except botocore.exceptions.ClientError as exc:
        err = exc.response.get("Error", {})
        raise AwsError(f"{what}: {err.get('Code', 'error')}: {err.get('Message', '')}".rstrip(": ")) from None


class RequestCounter:
    """AWS requests sent, by ``service.Operation`` (every HTTP attempt, retries included).

    A dict under a lock: a process's services publish :meth:`snapshot` (heartbeat, ``/health``) and
    load runs read it before and after to state AWS requests per order, which does not depend on
    the machine the way a rate does.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def count(self, request: Any = None, event_name: str = "", **_: Any) -> None:
        """botocore ``before-send`` handler; ``event_name`` is ``before-send.<service>.<Operation>``."""
        key = event_name.split(".", 1)[1] if "." in event_name else "unknown"
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


PROCESS_REQUESTS = RequestCounter()
"""Every request this process sends through :class:`Aws` (unless given a counter of its own)."""


class Aws:
    """Lazily created, thread-safe boto3 clients sharing one session per process.

    Every request is counted in ``counter`` (by default the process-wide :data:`PROCESS_REQUESTS`).
    """

    def __init__(self, settings: Settings, *, max_pool: int = 32, counter: RequestCounter | None = None) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._session = boto3.session.Session()
        self.counter = counter or PROCESS_REQUESTS
        self._session.events.register("before-send", self.counter.count)
        self._config = botocore.config.Config(
            region_name=settings.region,
            retries={"max_attempts": 4, "mode": "standard"},
            max_pool_connections=max_pool,
            connect_timeout=2,
            read_timeout=30,
        )

    @property
    def local(self) -> bool:
        return self.settings.aws_endpoint_url is not None

    def client(self, service: str) -> Any:
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                kwargs: dict[str, Any] = {"config": self._config}
                if self.settings.aws_endpoint_url:
                    kwargs["endpoint_url"] = self.settings.aws_endpoint_url
                    kwargs.update(_EMULATOR_CREDENTIALS)
                client = self._session.client(service, **kwargs)
                self._clients[service] = client
            return client

    # Shorthands for the services the runtime uses.
    @property
    def sqs(self) -> Any:
        return self.client("sqs")

    @property
    def dynamodb(self) -> Any:
        return self.client("dynamodb")

    @property
    def ssm(self) -> Any:
        return self.client("ssm")

    @property
    def kinesis(self) -> Any:
        return self.client("kinesis")

    @property
    def sns(self) -> Any:
        return self.client("sns")

    @property
    def cloudwatch(self) -> Any:
        return self.client("cloudwatch")

    @property
    def secrets(self) -> Any:
        return self.client("secretsmanager")

    def queue_url(self, name: str) -> str:
        with aws_errors(f"find queue {name}"):
            return self.sqs.get_queue_url(QueueName=name)["QueueUrl"]

    def topic_arn(self, name: str) -> str:
        with aws_errors(f"find topic {name}"):
            account = self.client("sts").get_caller_identity()["Account"]
        return f"arn:aws:sns:{self.settings.region}:{account}:{name}"
