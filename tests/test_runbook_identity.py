"""Who executes or approves: STS against AWS, TRADEOPS_OPERATOR or the OS user locally, and which source."""

from __future__ import annotations

import getpass

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


def test_aws_identity_is_the_sts_caller_arn(aws_settings):
    """Against AWS (no endpoint override) the identity is the STS caller ARN, whatever the operator setting."""
    real = aws_settings.model_copy(update={"aws_endpoint_url": None, "operator": "carol"})
    # STS answered by the local emulator: the code path is the real-AWS one, only the endpoint differs.
    who = current_identity(real, Aws(aws_settings))
    assert who.source == "sts" and who.name.startswith("arn:aws:")
