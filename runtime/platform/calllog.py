"""A record of the AWS calls a process makes, for checking them against the template's roles.

When ``TRADEOPS_AWS_CALL_LOG`` names a file, every boto3 session built by :class:`~.aws.Aws` appends
one JSON line per distinct call to it: who made it (the CLI command, or the component's module), the
service, the operation, and the parameters that name a resource (table, queue, parameter, topic,
secret, stream, bucket and key, metric namespace). Nothing else of a request is written: no item, no
message body, no secret value. Each process writes a call shape once, so a long-running worker adds
a few dozen lines, not one per order. tests/test_aws_permissions.py reads the file.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

__all__ = ["ENV", "install"]

ENV = "TRADEOPS_AWS_CALL_LOG"

# Parameters that name what a call acts on (or, for a condition key, how).
_NAMING = ("TableName", "IndexName", "QueueUrl", "QueueName", "Name", "Path", "TopicArn", "TargetArn", "SecretId",
           "StreamName", "StreamARN", "StreamArn", "Bucket", "Key", "Namespace", "ObjectLockMode", "ReturnValues")
_lock = threading.Lock()
_seen: set[str] = set()


def _who() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name not in ("__main__", "tradeops.cli"):
        return spec.name
    words = [a for a in sys.argv[1:] if not a.startswith("-")][:2]
    return "tradeops " + " ".join(words)


def _shape(params: dict[str, Any]) -> dict[str, Any]:
    shape: dict[str, Any] = {k: params[k] for k in _NAMING if isinstance(params.get(k), str)}
    if isinstance(params.get("Names"), list):
        shape["Names"] = sorted(params["Names"])
    if isinstance(params.get("RequestItems"), dict):  # BatchGetItem, BatchWriteItem
        shape["Tables"] = sorted(params["RequestItems"])
    if isinstance(params.get("TransactItems"), list):  # one action per item kind, on its table
        shape["Transact"] = sorted({f"{kind}:{body.get('TableName')}" for item in params["TransactItems"]
                                    for kind, body in item.items()})
    return shape


def install(session: Any) -> None:
    """Record ``session``'s calls when ``TRADEOPS_AWS_CALL_LOG`` is set (a no-op otherwise)."""
    path = os.environ.get(ENV)
    if not path:
        return

    def record(params: dict[str, Any] | None = None, model: Any = None, **_: Any) -> None:
        if model is None:
            return
        line = json.dumps({"who": _who(), "service": model.service_model.service_name, "operation": model.name,
                           "params": _shape(params or {})}, sort_keys=True)
        with _lock:
            if line in _seen:
                return
            _seen.add(line)
            # The log may name a file under a state folder the command has not made yet.
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            # One write of one line in append mode: lines from several processes do not interleave.
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")

    session.events.register("provide-client-params", record)
