"""Who executes or approves: STS against AWS, TRADEOPS_OPERATOR or the OS user locally, and which source."""

from __future__ import annotations

import getpass
import json
import uuid

import boto3
import pytest

from tradeops.runbooks.identity import current_identity
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import Refused


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


def _session_of_role(aws_settings, role: str, path: str) -> Aws:
    """A session of a role created in the emulator under ``path`` (moto lets anyone assume it)."""
    iam = Aws(aws_settings).client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
    arn = iam.create_role(RoleName=role, Path=path, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    sts = Aws(aws_settings).client("sts")
    creds = sts.assume_role(RoleArn=arn, RoleSessionName="frank@example.com")["Credentials"]
    session = boto3.session.Session(aws_access_key_id=creds["AccessKeyId"],
                                    aws_secret_access_key=creds["SecretAccessKey"],
                                    aws_session_token=creds["SessionToken"])
    return Aws(aws_settings, session=session)


def test_an_identity_center_session_counts_only_for_a_role_identity_center_made(aws_settings):
    """Against AWS, an AWSReservedSSO_* session names its Identity Center user when its role is under
    /aws-reserved/sso.amazonaws.com/ (read from IAM), and is refused when a look-alike role sits elsewhere."""
    real = aws_settings.model_copy(update={"aws_endpoint_url": None, "aws_account": "123456789012"})
    suffix = uuid.uuid4().hex[:12]
    made = _session_of_role(aws_settings, f"AWSReservedSSO_Ops_{suffix}", "/aws-reserved/sso.amazonaws.com/eu-west-2/")
    who = current_identity(real, made)
    assert (who.name, who.source) == ("identity-center:frank@example.com", "identity-center")
    fake = _session_of_role(aws_settings, f"AWSReservedSSO_Fake_{suffix}", "/")
    with pytest.raises(Refused, match="not one IAM Identity Center made"):
        current_identity(real, fake)
