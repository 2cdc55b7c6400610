"""Where the settings come from (runtime/platform/settings.py): keyword arguments over ``TRADEOPS_*`` variables over
the YAML file over the defaults, and every bad value one ConfigError naming the setting."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from tradeops.runtime.platform.errors import ConfigError
from tradeops.runtime.platform.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TRADEOPS_* variable of the caller's, and a working directory with no settings file in it."""
    for name in list(os.environ):
        if name.lower().startswith("tradeops_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def settings_file(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_with_nothing_set_the_defaults_hold_and_no_field_counts_as_set() -> None:
    settings = load_settings()
    assert (settings.region, settings.target, settings.gate_url) == ("eu-west-2", None, None)
    assert settings.state_dir == Path(os.environ["XDG_STATE_HOME"]) / "tradeops"
    assert settings.unwind_dual_approval == Decimal("10000")
    assert settings.model_fields_set == set()


def test_an_environment_variable_sets_its_field_whatever_the_case_of_its_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEOPS_REGION", "eu-west-1")
    monkeypatch.setenv("tradeops_name_prefix", "lower")
    monkeypatch.setenv("TradeOps_Stack_Name", "mixed")
    settings = load_settings()
    assert (settings.region, settings.name_prefix, settings.stack_name) == ("eu-west-1", "lower", "mixed")
    assert settings.model_fields_set == {"region", "name_prefix", "stack_name"}


def test_a_variable_that_names_no_setting_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEOPS_NO_SUCH_SETTING", "x")
    monkeypatch.setenv("TRADEOPS_CONFIG", "")  # names the file, not a setting
    assert load_settings().model_fields_set == set()


def test_variables_are_read_as_their_fields_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEOPS_ENFORCE", "yes")
    monkeypatch.setenv("TRADEOPS_BROKER_SUSPICION", "0")
    monkeypatch.setenv("TRADEOPS_UNWIND_DUAL_APPROVAL", "12.50")
    monkeypatch.setenv("TRADEOPS_WORKER_BATCH_SIZE", "7")
    monkeypatch.setenv("TRADEOPS_SUSPECT_CEILING_MS", "900.5")
    monkeypatch.setenv("TRADEOPS_STATE_DIR", "/srv/state")
    monkeypatch.setenv("TRADEOPS_TARGET", "aws")
    monkeypatch.setenv("TRADEOPS_GATE_URL", "")
    settings = load_settings()
    assert settings.enforce is True and settings.broker_suspicion is False
    assert settings.unwind_dual_approval == Decimal("12.50") and isinstance(settings.unwind_dual_approval, Decimal)
    assert settings.worker_batch_size == 7 and settings.suspect_ceiling_ms == 900.5
    assert settings.state_dir == Path("/srv/state") and settings.state_file == Path("/srv/state/stack.json")
    assert settings.target == "aws"
    assert settings.gate_url == ""  # an empty variable is an empty value, not unset


@pytest.mark.parametrize(("name", "value", "message"), [
    ("TRADEOPS_WORKER_BATCH_SIZE", "11", "invalid setting worker_batch_size: Input should be less than or equal to 10"),
    ("TRADEOPS_UNWIND_DUAL_APPROVAL", "abc", "invalid setting unwind_dual_approval: Input should be a valid decimal"),
    ("TRADEOPS_TARGET", "", "invalid setting target: Input should be 'local' or 'aws'"),
    ("TRADEOPS_SUSPECT_CEILING_MS", "", "invalid setting suspect_ceiling_ms: Input should be a valid number"),
    ("TRADEOPS_PARAM_PREFIX", "x", "invalid setting param_prefix: Value error, must start with '/'"),
    ("TRADEOPS_AWS_ACCOUNT", "12", "invalid setting aws_account: String should match pattern"),
    ("TRADEOPS_ENFORCE", "perhaps", "invalid setting enforce: Input should be a valid boolean"),
])
def test_a_bad_value_is_one_config_error_naming_the_setting(monkeypatch: pytest.MonkeyPatch, name: str,
                                                            value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_settings_file_in_the_working_directory_is_read_and_the_environment_wins_over_it(
        clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_file(clean / "tradeops.yaml", "region: eu-central-1\nname_prefix: fromfile\ngate_url: null\n")
    settings = load_settings()
    assert (settings.region, settings.name_prefix, settings.gate_url) == ("eu-central-1", "fromfile", None)
    assert settings.model_fields_set == {"region", "name_prefix", "gate_url"}
    monkeypatch.setenv("TRADEOPS_REGION", "eu-west-1")
    assert (load_settings().region, load_settings().name_prefix) == ("eu-west-1", "fromfile")


def test_keyword_arguments_win_over_the_environment_and_the_file(clean: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    settings_file(clean / "tradeops.yaml", "region: eu-central-1\ngate_url: http://file\n")
    monkeypatch.setenv("TRADEOPS_REGION", "eu-west-1")
    monkeypatch.setenv("TRADEOPS_GATE_URL", "http://env")
    settings = load_settings(region="us-east-1", gate_url=None)
    assert (settings.region, settings.gate_url) == ("us-east-1", None)


def test_constructing_settings_directly_reads_the_same_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEOPS_REGION", "eu-west-3")
    assert Settings().region == "eu-west-3"
    assert Settings(region="eu-north-1").region == "eu-north-1"


def test_tradeops_config_names_the_settings_file(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_file(clean / "tradeops.yaml", "region: eu-central-1\n")
    elsewhere = settings_file(clean / "prod.yaml", "region: eu-west-1\n")
    monkeypatch.setenv("TRADEOPS_CONFIG", str(elsewhere))
    assert load_settings().region == "eu-west-1"


def test_an_empty_settings_file_sets_nothing(clean: Path) -> None:
    settings_file(clean / "tradeops.yaml", "")
    assert load_settings().model_fields_set == set()


@pytest.mark.parametrize(("text", "message"), [
    ("nope: 1\n", "invalid setting nope: Extra inputs are not permitted"),
    ("Region: eu-west-1\n", "invalid setting Region: Extra inputs are not permitted"),  # keys are exact names
    ("- a\n", "settings file tradeops.yaml must be a mapping of setting: value"),
    ("a: [\n", "settings file tradeops.yaml:2: not valid YAML: expected the node content"),
    ("region: &r eu-west-1\n", "settings file tradeops.yaml:1: refused: YAML anchors (&r) are not allowed"),
    ("worker_batch_size: 0\n", "invalid setting worker_batch_size: Input should be greater than or equal to 1"),
])
def test_a_broken_settings_file_is_one_config_error(clean: Path, text: str, message: str) -> None:
    settings_file(clean / "tradeops.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_settings_file_named_but_missing_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEOPS_CONFIG", "nofile.yaml")
    with pytest.raises(ConfigError, match=r"^settings file nofile.yaml \(TRADEOPS_CONFIG\) does not exist$"):
        load_settings()


def test_settings_are_frozen_and_copied_with_changes() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.region = "eu-west-1"  # type: ignore[misc]
    moved = settings.model_copy(update={"region": "eu-west-1"})
    assert (settings.region, moved.region) == ("eu-west-2", "eu-west-1")
