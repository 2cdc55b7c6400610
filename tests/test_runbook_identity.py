"""Who executes or approves: STS against AWS, TRADEOPS_OPERATOR or the OS user locally, and which source."""

from __future__ import annotations

import getpass
import uuid

import boto3

from tradeops.runbooks.identity import current_identity
from tradeops.runtime.platform.aws import Aws


def test_local_identity_is_the_operator_setting(aws_settings):
    """On the local stack the identity is TRADEOPS_OPERATOR, and it says so."""
    who = current_identity(aws_settings.model_copy(update={"operator": " carol "}))
    assert (who.name, who.source) == ("carol", "TRADEOPS_OPERATOR")


def test_local_identity_falls_back_to_the_os_user(aws_settings):
    """Without TRADEOPS_OPERATOR the local identity is the OS user, labelled as such."""
    who = current_identity(aws_settings.model_copy(update={"operator": None}))
    assert (who.name, who.source) == (getpass.getuser(), "os-user")


def test_aws_identity_is_the_iam_user_behind_the_sts_caller(aws_settings):
    """Against AWS (no endpoint override) the identity is the IAM user STS names, whatever the operator setting."""
    real = aws_settings.model_copy(update={"aws_endpoint_url": None, "operator": "carol"})
    iam = Aws(aws_settings).client("iam")
    name = f"erin-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=name, Path="/ops/")
    key = iam.create_access_key(UserName=name)["AccessKey"]
    session = boto3.session.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    # STS answered by the local emulator: the code path is the real-AWS one, only the endpoint differs.
    who = current_identity(real, Aws(aws_settings, session=session))
    assert (who.name, who.source) == (f"arn:aws:iam::123456789012:user/{name}", "iam-user")
