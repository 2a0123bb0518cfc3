"""Kafka settings: one field table gives the dataclass, the variables and the options."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from consumers.kafka_config import SETTINGS, KafkaSettings, settings_from_env
from consumers.kafka_options import kafka_options, pop_kafka_options
from ledger.config import ConfigError


def given_values(tmp_path: Path) -> dict[str, str]:
    """A text value for every setting, as a user would type it."""
    cert = tmp_path / "cert.pem"
    cert.write_text("not checked here")
    return {
        "bootstrap": "k1:9093,k2:9093",
        "security_protocol": "sasl_ssl",
        "sasl_mechanism": "scram-sha-512",
        "sasl_username": "relay",
        "sasl_password": "secret",
        "sasl_kerberos_service_name": "kafka",
        "ssl_cafile": str(cert),
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(cert),
        "ssl_password": "key-secret",
        "ssl_check_hostname": "false",
        "client_id": "ledger-relay-7",
        "connect_timeout": "2.5",
    }


def expected_settings(tmp_path: Path) -> KafkaSettings:
    cert = str(tmp_path / "cert.pem")
    return KafkaSettings(
        bootstrap="k1:9093,k2:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="relay",
        sasl_password="secret",
        sasl_kerberos_service_name="kafka",
        ssl_cafile=cert,
        ssl_certfile=cert,
        ssl_keyfile=cert,
        ssl_password="key-secret",
        ssl_check_hostname=False,
        client_id="ledger-relay-7",
        connect_timeout_s=2.5,
    )


def test_every_field_but_extra_has_a_variable_and_an_option() -> None:
    assert [s.attribute for s in SETTINGS] == [
        f.name for f in fields(KafkaSettings) if f.name != "extra"
    ]
    assert len({s.env for s in SETTINGS}) == len({s.option for s in SETTINGS}) == len(SETTINGS)


def test_every_variable_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in given_values(tmp_path).items():
        monkeypatch.setenv(f"LEDGER_KAFKA_{key.upper()}", value)
    assert settings_from_env() == expected_settings(tmp_path)
    # An explicit value wins over the variable.
    assert settings_from_env(client_id="other").client_id == "other"


def test_unset_and_empty_variables_mean_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for s in SETTINGS:
        monkeypatch.delenv(s.env, raising=False)
    monkeypatch.setenv("LEDGER_KAFKA_BOOTSTRAP", "")
    assert settings_from_env() == KafkaSettings()


def test_a_bad_number_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_KAFKA_CONNECT_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="bad LEDGER_KAFKA_CONNECT_TIMEOUT 'soon': not a number"):
        settings_from_env()


@click.command()
@kafka_options
def show(**options: Any) -> None:
    click.echo(repr(pop_kafka_options(options)))
    # Nothing but the Kafka options was given to the command.
    assert not options


@pytest.mark.parametrize("how", ["options", "variables"])
def test_every_option_and_its_variable_reach_the_settings(tmp_path: Path, how: str) -> None:
    values = given_values(tmp_path)
    args: list[str] = []
    env: dict[str, str] = {}
    for s in SETTINGS:
        value = values[s.key]
        if how == "variables":
            env[s.env] = value
        elif s.kind is bool:
            args.append(s.option if value == "true" else f"--no-{s.option[2:]}")
        else:
            args += [s.option, value]
    result = CliRunner().invoke(show, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == repr(expected_settings(tmp_path))


def test_no_options_give_the_defaults() -> None:
    env = {s.env: "" for s in SETTINGS}
    result = CliRunner().invoke(show, [], env=env, catch_exceptions=False)
    assert result.output.strip() == repr(KafkaSettings())


def test_the_kit_does_not_need_click() -> None:
    kit = [
        "consumers.kafka_config",
        "consumers.kafka_connect",
        "consumers.kafka_topics",
        "consumers.seen_store",
        "consumers.subscriber",
    ]
    code = f"import sys\nfor m in {kit!r}: __import__(m)\nprint('click' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
