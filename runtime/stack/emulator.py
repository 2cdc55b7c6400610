"""The local stack's AWS: moto server, with DynamoDB's one-item-at-a-time guarantee restored.

DynamoDB applies each item write atomically: a conditional write sees the item as the last write
left it. moto server answers every request in its own thread and checks a condition, then applies
the update, in plain Python with no lock: under concurrent writers two conditional writes on one
item can both pass (and a failed multi-item transaction restores a snapshot of the whole table,
erasing what other writers committed meanwhile). The audit chain and the four-eyes state in the
executions table rely on the guarantee, so this launcher runs moto's own WSGI application behind a
lock that lets one DynamoDB request at a time through. Other services are untouched (an SQS long
poll must not hold anything up), and DynamoDB requests are short, CPU-bound Python that the GIL
serialises anyway, so the lock costs next to nothing.

Kinesis gets the same lock: moto's ``Shard.put_record`` numbers a record from the shard's last one
("not safe for concurrency", its own comment says), so two concurrent puts could share a sequence
number and one record would overwrite the other.

Four of moto's costs are removed here (profiled with py-spy under `tradeops load run`; figures in
bench/README.md, "Where the emulator's time went"):

- the dispatcher lists moto's package directory (``os.listdir`` plus ``isdir`` on ~250 entries) on
  every request to find the backend; the list cannot change while the server runs, so it is
  computed once;
- a Kinesis put finds the shard's last sequence number by copying every key of the shard into a list,
  so publishing slows down as the price feed's stream grows; the last key of an insertion-ordered
  dict is read from its end instead. Same answer, O(1);
- DynamoDB Streams' GetRecords answers records that are already in the wire's JSON form (moto builds
  them so when the item is written), yet each one goes through moto's generic, model-driven response
  serializer, attribute by attribute: with both images of every order change that was a third of
  the emulator's time under load. They are written out with ``json.dumps`` instead;
- an SQS receive checks each message it returns against the queue's retention period by computing
  *every* queue attribute, including the approximate counts, each a pass over all the queue's
  messages. A backlog made each receive slower, which grew the backlog: at 20 orders/s on two cores
  the workers fell behind for good. The retention period is read from the queue itself instead.

Werkzeug's one log line per request is turned off too (the stack's logs are for our services).

One gap of moto's CloudFormation is filled (:func:`fill_moto_gaps`): a list item that resolves to
``AWS::NoValue`` (``- !If [Condition, item, !Ref AWS::NoValue]``, how the runtime template adds the FIS
sidecar container only with FaultInjection enabled) is dropped, as CloudFormation drops it; moto kept a
``None`` there, and registering the task definition failed.

Run as ``python -m tradeops.runtime.stack.emulator -H 127.0.0.1 -p PORT`` (the supervisor and the
test fixtures do); it serves the same API as ``python -m moto.server``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

__all__ = ["SERIALISED_TARGETS", "SerialDynamoDB", "authorize_resources", "fill_moto_gaps", "main", "speed_up_moto"]

# X-Amz-Target prefixes of the requests that run one at a time: DynamoDB, DynamoDB Streams, Kinesis.
SERIALISED_TARGETS = ("DynamoDB", "Kinesis_")


class SerialDynamoDB:
    """WSGI middleware: DynamoDB (and DynamoDB Streams, Kinesis) requests run one at a time, each to its
    last byte."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith(SERIALISED_TARGETS):
            with self.lock:
                return list(self.app(environ, start_response))  # the whole answer, inside the lock
        return self.app(environ, start_response)


def speed_up_moto() -> None:
    """Compute once what moto recomputes on every request (see the module docstring). Idempotent."""
    from moto import backends  # the dispatcher (moto.moto_server.werkzeug_app) calls it through this module
    from moto.core.utils import unix_time
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler
    from moto.kinesis.models import Shard
    from moto.sqs.models import Message, SQSBackend

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules

    def get_max_sequence_number(self: Shard) -> int:
        return next(reversed(self.records), 0)

    Shard.get_max_sequence_number = get_max_sequence_number  # type: ignore[method-assign]

    def is_message_valid_based_on_retention_period(self: SQSBackend, queue_name: str, message: Message) -> bool:
        # The attribute moto sets from MessageRetentionPeriod, which get_queue_attributes reads too.
        retention_period = getattr(self.get_queue(queue_name), "message_retention_period")  # noqa: B009
        return bool(retention_period + (message.sent_timestamp or 0) / 1000 > unix_time())

    SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period)

    def get_records(self: DynamoDBStreamsHandler) -> str:
        limit = self._get_param("Limit")
        result = self.backend.get_records(self._get_param("ShardIterator"), 1000 if limit is None else limit)
        return json.dumps(result, default=_epoch_seconds)

    DynamoDBStreamsHandler.get_records = get_records  # type: ignore[assignment,method-assign]


def authorize_resources() -> None:
    """Name the resource of DynamoDB, SSM, SNS and Secrets Manager requests (and SQS GetQueueUrl) to moto's
    IAM access control. Idempotent.

    With access control on (``INITIAL_NO_AUTH_ACTION_COUNT``), moto checks a request's resource only for
    S3, SQS, IAM and STS; for every other service it checks the action against the resource ``*``, which
    no statement naming a table or a parameter matches, so the template's policies would allow nothing
    there. With the table's (or index's), the parameter's, the topic's and the secret's ARN, a principal
    holding the template's policy may do there what it may do on AWS, and is refused the rest (what the
    approval gate relies on: only its role writes the guarded flags, the roster and the decisions
    table). Conditions are still not evaluated (moto does not); a request naming several parameters is
    checked on the first. An S3 request moto checks under its API operation's name is checked under the IAM
    action AWS uses (:data:`_S3_IAM_ACTIONS`).
    """
    from moto.dynamodb.responses import DynamoHandler
    from moto.iam.access_control import S3IAMRequest
    from moto.secretsmanager.responses import SecretsManagerResponse
    from moto.sns.responses import SNSResponse
    from moto.sqs.responses import SQSResponse
    from moto.ssm.responses import SimpleSystemManagerResponse

    def table_arn(self: DynamoHandler) -> str:
        body = _json_body(self.body)
        table, index = body.get("TableName"), body.get("IndexName")
        if not isinstance(table, str):
            return "*"
        arn = f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/{table}"
        return f"{arn}/index/{index}" if isinstance(index, str) else arn

    def parameter_arn(self: SimpleSystemManagerResponse) -> str:
        body = _json_body(self.body)
        names = body.get("Names")
        name = body.get("Name") or body.get("Path") or (names[0] if isinstance(names, list) and names else None)
        if not isinstance(name, str):
            return "*"
        path = name if name.startswith("/") else f"/{name}"
        return f"arn:aws:ssm:{self.region}:{self.current_account}:parameter{path}"

    def topic_arn(self: SNSResponse) -> str:
        return str(self._get_param("TopicArn") or "*")

    def secret_arn(self: SecretsManagerResponse) -> str:
        secret = _json_body(self.body).get("SecretId")
        if not isinstance(secret, str):
            return "*"
        try:
            return str(self.backend.describe_secret(secret).arn)  # a name, a partial or a full ARN
        except Exception:  # no such secret: the action answers that, once allowed at all
            return "*"

    by_url = SQSResponse._determine_resource

    def queue_arn(self: SQSResponse) -> str:
        # moto finds an SQS request's queue by its URL; GetQueueUrl names it instead.
        name = self._get_param("QueueName")
        if not isinstance(name, str):
            return by_url(self)
        try:
            return str(self.sqs_backend.get_queue(name).queue_arn)
        except Exception:  # no such queue: the action answers that, once allowed at all
            return "*"

    check_s3 = S3IAMRequest.check_action_permitted

    def s3_iam_action(self: S3IAMRequest, resource: str) -> None:
        # moto checks some S3 requests under the API operation's name, which no policy names (ListObjectsV2 is
        # s3:ListBucket to IAM): an operator listing the audit anchors was refused what AWS allows.
        self._action = _S3_IAM_ACTIONS.get(self._action, self._action)
        check_s3(self, resource)

    S3IAMRequest.check_action_permitted = s3_iam_action  # type: ignore[method-assign,assignment]
    DynamoHandler._determine_resource = table_arn  # type: ignore[attr-defined]
    SQSResponse._determine_resource = queue_arn  # type: ignore[method-assign]
    SecretsManagerResponse._determine_resource = secret_arn  # type: ignore[attr-defined]
    SNSResponse._determine_resource = topic_arn  # type: ignore[attr-defined]
    SimpleSystemManagerResponse._determine_resource = parameter_arn  # type: ignore[attr-defined]


_S3_IAM_ACTIONS = {"s3:ListObjectsV2": "s3:ListBucket", "s3:ListObjects": "s3:ListBucket",
                   "s3:ListObjectVersions": "s3:ListBucketVersions", "s3:HeadBucket": "s3:ListBucket",
                   "s3:HeadObject": "s3:GetObject",
                   "s3:GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration"}
"""S3 operations moto checks under their own name, and the IAM action AWS checks them as."""


def _json_body(body: object) -> dict[str, Any]:
    """A request's JSON body as a dict (moto hands some requests over already parsed, some as bytes)."""
    if isinstance(body, dict):
        return body
    try:
        parsed = json.loads(body or "{}") if isinstance(body, str | bytes) else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def fill_moto_gaps() -> None:
    """Make moto's CloudFormation drop list items that resolve to AWS::NoValue (see the module docstring)."""
    from moto.cloudformation import parsing

    if getattr(parsing.clean_json, "drops_no_value", False):
        return
    original = parsing.clean_json

    def no_value(item: Any) -> bool:
        """Whether a list item is AWS::NoValue as written: the pseudo parameter, or an Fn::If that may give it."""
        return isinstance(item, dict) and (item == {"Ref": "AWS::NoValue"} or "Fn::If" in item)

    def clean_json(resource_json: Any, resources_map: Any) -> Any:
        if isinstance(resource_json, list):
            # moto resolves !Ref AWS::NoValue to None, and drops it from a mapping but not from a list. Only those
            # go: a None from a resource moto's CloudFormation skipped (a !Ref to a secret the deploy creates
            # after) stays, as before, so a policy naming it keeps its statement.
            cleaned = [(v, clean_json(v, resources_map)) for v in resource_json]
            return [item for v, item in cleaned if not (item is None and no_value(v))]
        return original(resource_json, resources_map)  # its own recursion comes back through this module name

    clean_json.drops_no_value = True  # type: ignore[attr-defined]
    parsing.clean_json = clean_json


def _epoch_seconds(value: object) -> float:
    """A record's creation time as the JSON protocol sends timestamps (moto keeps it as naive UTC)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{type(value).__name__} in a stream record")
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def main(argv: list[str] | None = None) -> int:
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(prog="python -m tradeops.runtime.stack.emulator")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    # Everything the emulator holds is in memory and goes with it: on SIGTERM it exits at once, without the half
    # second an orderly interpreter shutdown spends tearing down moto's backends (every stack stop waited on it).
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    speed_up_moto()
    fill_moto_gaps()
    from moto import settings as moto_settings
    if moto_settings.INITIAL_NO_AUTH_ACTION_COUNT != float("inf"):  # access control on: else nothing reads it
        authorize_resources()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, SerialDynamoDB(app), threaded=True, request_handler=MotoRequestHandler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
