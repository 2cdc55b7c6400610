"""boto3 clients for every process, and the one place AWS errors become ours.

On the local stack the only difference from production is the endpoint URL; the emulator
gets fixed dummy credentials so that real ones are never sent to it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from xml.etree import ElementTree

import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions

from tradeops.runtime.platform import calllog
from tradeops.runtime.platform.errors import AwsError, StackError, TradeopsError
from tradeops.runtime.platform.settings import Settings

__all__ = ["PROCESS_REQUESTS", "Aws", "RequestCounter", "aws_errors", "condition_failed", "error_code",
           "foreign_error"]

_EMULATOR_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, else None."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return _xml_error(exc.response.get("Error", {})).get("Code")
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _where(url: Any) -> str:
    url = str(url or "AWS")
    local = "127.0.0.1" in url or "localhost" in url
    return f"{url} (is the stack up? `tradeops up`)" if local else url


def foreign_error(exc: BaseException, what: str) -> TradeopsError | None:
    """The one line an operator reads for a botocore error (None for anything that is not botocore's).

    Every connection failure (refused, proxy down, TLS, timeouts), every credential and region
    problem and every service error becomes one of ours here, so no command prints a traceback
    however AWS fails to answer. :func:`aws_errors` uses it at each call; ``cli.main`` as the last
    line of defence.
    """
    e = botocore.exceptions
    if isinstance(exc, e.ProxyConnectionError):
        proxy = exc.kwargs.get("proxy_url", "the configured proxy")
        return AwsError(f"{what}: cannot reach AWS through the proxy {proxy} (is it up? HTTPS_PROXY/HTTP_PROXY "
                        "name it)")
    if isinstance(exc, e.ConnectTimeoutError):
        return AwsError(f"{what}: connecting to {_where(exc.kwargs.get('endpoint_url'))} timed out")
    if isinstance(exc, e.SSLError):
        return AwsError(f"{what}: TLS to {exc.kwargs.get('endpoint_url', 'AWS')} failed ({_first_line(exc)})")
    if isinstance(exc, e.EndpointConnectionError):
        return StackError(f"{what}: cannot reach {_where(exc.kwargs.get('endpoint_url'))}")
    if isinstance(exc, e.ReadTimeoutError):
        return AwsError(f"{what}: {exc.kwargs.get('endpoint_url', 'AWS')} did not answer in time")
    if isinstance(exc, e.HTTPClientError | e.ConnectionError):
        return AwsError(f"{what}: the connection to AWS failed ({_first_line(exc)})")
    if isinstance(exc, e.NoRegionError):
        return AwsError(f"{what}: no AWS region: set AWS_REGION (or TRADEOPS_REGION)")
    if isinstance(exc, e.NoCredentialsError | e.PartialCredentialsError):
        return AwsError(f"{what}: no AWS credentials found (AWS_PROFILE, the environment, SSO or an instance role)")
    if isinstance(exc, e.ProfileNotFound):
        return AwsError(f"{what}: AWS profile {exc.kwargs.get('profile')!r} does not exist (AWS_PROFILE)")
    if isinstance(exc, e.SSOError | e.TokenRetrievalError):
        return AwsError(f"{what}: the AWS SSO session has expired or is missing: run `aws sso login`")
    if isinstance(exc, e.CredentialRetrievalError):
        return AwsError(f"{what}: could not get AWS credentials ({_first_line(exc)})")
    if isinstance(exc, e.ClientError):
        err = _xml_error(exc.response.get("Error", {}))
        code = err.get("Code", "error")
        if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
            return AwsError(f"{what}: the AWS credentials have expired; renew them (`aws sso login`, or a new session)")
        return AwsError(f"{what}: {code}: {err.get('Message', '')}".rstrip(": "))
    if isinstance(exc, e.BotoCoreError):
        return AwsError(f"{what}: {_first_line(exc)}")
    return None


def _xml_error(err: dict[str, Any]) -> dict[str, Any]:
    """``err``, or the code and message of the XML error document it carries as its message.

    The emulator with IAM access control on refuses a request of a JSON-protocol service (SSM, DynamoDB,
    CloudWatch) with an XML document, which botocore cannot parse: it reports the HTTP status as the code and
    the whole document as the message. A person reads ``AccessDenied: User ... is not authorized ...``."""
    message = str(err.get("Message") or "")
    if not message.lstrip().startswith("<"):
        return err
    try:
        root = ElementTree.fromstring(message.strip())  # noqa: S314 - the AWS endpoint's own answer
    except ElementTree.ParseError:
        return {**err, "Message": " ".join(message.split())[:300]}
    found = {el.tag.rsplit("}", 1)[-1]: (el.text or "").strip() for el in root.iter()}
    return {**err, "Code": found.get("Code") or err.get("Code"), "Message": found.get("Message") or ""}


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Map botocore's connection, credential and client errors to AwsError/StackError with a readable line."""
    try:
        yield
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        ours = foreign_error(exc, what)
        if ours is None:  # pragma: no cover - foreign_error answers for every botocore error
            raise
        raise ours from None


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

    def __init__(self, settings: Settings, *, max_pool: int = 32, session: boto3.session.Session | None = None,
                 counter: RequestCounter | None = None) -> None:
        """``session`` carries credentials of its own (an assumed role, in tests of identities); by default
        the standard chain, or the emulator's dummy credentials when an endpoint is set."""
        self.settings = settings
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._own_session = session is not None
        self._session = session or boto3.session.Session()
        self._account: str | None = None
        self.counter = counter or PROCESS_REQUESTS
        self._session.events.register("before-send", self.counter.count)
        calllog.install(self._session)  # TRADEOPS_AWS_CALL_LOG: which calls this process makes (tests of the roles)
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
                    if not self._own_session:
                        kwargs.update(self._emulator_credentials())
                client = self._session.client(service, **kwargs)
                self._clients[service] = client
            return client

    def credentials(self) -> botocore.credentials.Credentials:
        """The credentials this process's clients sign with (the approval gate's proofs are signed with them)."""
        if self.settings.aws_endpoint_url and not self._own_session:
            keys = self._emulator_credentials()
            return botocore.credentials.Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"])
        found = self._session.get_credentials()
        if found is None:
            raise AwsError("no AWS credentials found (AWS_PROFILE, `aws sso login`, or the instance's role)")
        frozen = found.get_frozen_credentials()
        return botocore.credentials.Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    def _emulator_credentials(self) -> dict[str, str]:
        """The key for the emulator: this process's principal's on a stack that enforces IAM, else the test key."""
        key_id, secret = self.settings.emulator_access_key_id, self.settings.emulator_secret_access_key
        if key_id and secret:
            return {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
        return dict(_EMULATOR_CREDENTIALS)

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

    def caller(self) -> dict[str, Any]:
        """STS GetCallerIdentity: ``account``, ``arn``, and the ``date`` AWS stamped on its answer (clock skew)."""
        with aws_errors("find the caller identity (STS)"):
            answer = self.client("sts").get_caller_identity()
        headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return {"account": answer["Account"], "arn": answer["Arn"], "date": headers.get("date")}

    def topic_arn(self, name: str) -> str:
        if self._account is None:  # one STS call per process, not one per publish
            self._account = self.caller()["account"]
        return f"arn:aws:sns:{self.settings.region}:{self._account}:{name}"
