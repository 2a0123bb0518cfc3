"""The Kafka connection options as click options, generated from `KafkaSettings`'
field table: the relay's commands and the subscriber kit's consumers (which must not
depend on the CLI) share them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from consumers.kafka_config import OPTION_NAMES, SETTINGS, KafkaSettings, Setting
from consumers.kafka_config import settings_from_options as _settings_from_options


def _option(s: Setting) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    help_text = f"{s.help} [env {s.env}]".strip()
    if s.kind is bool:
        return click.option(
            f"{s.option}/--no-{s.option[2:]}",
            s.key,
            envvar=s.env,
            default=s.default,
            show_default=True,
            help=help_text,
        )
    kind: Any = None
    if s.choices:
        kind = click.Choice(s.choices, case_sensitive=False)
    elif s.kind is float:
        kind = click.FloatRange(min=s.minimum)
    return click.option(
        s.option,
        s.key,
        envvar=s.env,
        type=kind,
        default=s.default,
        show_default=s.default is not None,
        metavar=s.metavar,
        help=help_text,
    )


def kafka_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The Kafka connection options, each with its `LEDGER_KAFKA_*` variable."""
    for setting in reversed(SETTINGS):
        func = _option(setting)(func)
    return func


def pop_kafka_options(options: dict[str, Any]) -> KafkaSettings:
    """Take the Kafka options out of a command's keyword arguments."""
    taken = {name: options.pop(name) for name in OPTION_NAMES if name in options}
    return _settings_from_options(taken)
