"""The README's environment table is the configuration: each row reaches what it says, nothing else.

Driven by the table itself: for every variable and every component in its "used by"
column, setting the variable changes what that component reads; a literal default in the
table is the component's default; and every setting a component reads from ``LOCKGATE_*``
has its row naming that component. Doc and code cannot drift apart silently.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import TypeAdapter
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from deploy.settings import StackSettings
from lockgate.cli import context
from lockgate.cli.locate import locate
from lockgate.cli.spool import spool_dir
from lockgate.cli.verify import _checkpoint_interval_s
from processors.settings import ProcessorSettings
from producers.settings import GuardSettings
from sinks.service import SinkSettings
from witness.settings import WitnessSettings

README = Path(__file__).resolve().parents[2] / "README.md"

SETTINGS: dict[str, type[BaseSettings]] = {
    "SDK": GuardSettings, "processor": ProcessorSettings, "sink": SinkSettings, "stack": StackSettings,
    "witness": WitnessSettings,
}
ALL = (*SETTINGS, "CLI")

NUMERIC_CLI = ("LOCKGATE_KAFKA_PORT", "LOCKGATE_CHECKPOINT_INTERVAL_S")

# How the CLI reads each variable it uses (it has no settings class of its own).
CLI: dict[str, Callable[[], Any]] = {
    "LOCKGATE_HOME": context.home,
    "LOCKGATE_TOPIC_PREFIX": lambda: context.topics().prefix,
    "LOCKGATE_BOOTSTRAP_SERVERS": context.bootstrap,
    "LOCKGATE_KAFKA_PORT": context.bootstrap,
    "LOCKGATE_CLICKHOUSE_DSN": lambda: locate().dsn,
    "LOCKGATE_CLICKHOUSE_DATABASE": lambda: locate().database,
    "LOCKGATE_SPOOL_DIR": spool_dir,
    "LOCKGATE_LOG_NAME": context.log_name,
    "LOCKGATE_CHECKPOINT_INTERVAL_S": lambda: _checkpoint_interval_s(None),
}


def _rows() -> list[tuple[str, tuple[str, ...], str]]:
    """(variable, components, documented default) for every variable of the README table."""
    text = README.read_text()
    section = text.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    out: list[tuple[str, tuple[str, ...], str]] = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`LOCKGATE_"):
            continue
        names = re.findall(r"`(LOCKGATE_[A-Z0-9_]+)`", cells[0])
        users = tuple(c for u in cells[1].split(",") for c in (ALL if u.strip() == "all" else (u.strip(),)))
        defaults = [d.strip() for d in cells[2].split(",")] if len(names) > 1 else [cells[2]]
        if len(defaults) != len(names):
            defaults = [cells[2]] * len(names)
        out += [(name, users, default) for name, default in zip(names, defaults, strict=True)]
    return out


ROWS = _rows()
PAIRS = [(var, user) for var, users, _ in ROWS for user in users]


def _field(var: str) -> str:
    return var.removeprefix("LOCKGATE_").lower()


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, _, _ in ROWS:
        monkeypatch.delenv(var, raising=False)


def _sample(cls: type[BaseSettings], field: str, tmp_path: Path) -> str:
    """A valid value for ``field`` that differs from its default."""
    info = cls.model_fields[field]
    text = str(info.annotation)
    if get_origin(info.annotation) is Literal:
        return str(next(v for v in get_args(info.annotation) if v != info.default))
    if "Path" in text:
        return str(tmp_path / f"{field}-probe")
    if "bool" in text:
        return "false" if info.default is True else "true"
    if "float" in text:
        return "42.5"
    if "int" in text:
        ceiling = min((getattr(m, "le", 4242) for m in info.metadata), default=4242)
        return str(4242 if ceiling >= 4242 else ceiling if ceiling != info.default else ceiling - 1)
    return f"{field}-probe"


def _parse(cls: type[BaseSettings], field: str, raw: str) -> Any:
    """``raw`` as the settings class reads it from the environment."""
    annotation = cls.model_fields[field].annotation
    assert annotation is not None
    return TypeAdapter(annotation).validate_python(raw)


def test_the_table_is_found_and_names_only_known_components() -> None:
    assert len(ROWS) > 25
    assert {u for _, users, _ in ROWS for u in users} <= {*ALL, "tests"}


@pytest.mark.parametrize(("var", "component"), PAIRS, ids=[f"{v}->{c}" for v, c in PAIRS])
def test_each_variable_reaches_each_component_the_table_names(
        var: str, component: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clear(monkeypatch)
    if component == "tests":
        from tests import conftest

        assert var in inspect.getsource(conftest), f"{var}: no test fixture reads it"
        return
    if component == "CLI":
        assert var in CLI, f"the README says the CLI reads {var}; teach this test how it does"
        value = "kafka.example:9093" if var == "LOCKGATE_BOOTSTRAP_SERVERS" else (
            str(tmp_path) if var == "LOCKGATE_HOME" else "4242" if var in NUMERIC_CLI else "probe.")
        monkeypatch.setenv(var, value)
        seen = CLI[var]()
        assert str(value) in str(seen), f"{var}={value} did not reach the CLI (it read {seen!r})"
        return
    cls = SETTINGS[component]
    field = _field(var)
    assert field in cls.model_fields, f"the README says {component} reads {var}, but {cls.__name__} has no {field}"
    value = _sample(cls, field, tmp_path)
    monkeypatch.setenv(var, value)
    expected = _parse(cls, field, value)
    settings = cls()
    assert getattr(settings, field) == expected, f"{var}={value} did not reach {cls.__name__}.{field}"
    if var == "LOCKGATE_KAFKA_PORT" and "bootstrap_servers" in cls.model_fields:
        assert settings.bootstrap_servers == f"127.0.0.1:{value}", f"{cls.__name__} ignores {var}"  # type: ignore[attr-defined]


@pytest.mark.parametrize("component", ["SDK", "processor", "sink"])
def test_kafka_port_moves_every_components_broker_while_no_bootstrap_is_set(
        component: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("LOCKGATE_KAFKA_PORT", "29092")
    assert SETTINGS[component]().bootstrap_servers == "127.0.0.1:29092"  # type: ignore[attr-defined]
    monkeypatch.setenv("LOCKGATE_BOOTSTRAP_SERVERS", "kafka.example:9093")
    assert SETTINGS[component]().bootstrap_servers == "kafka.example:9093"  # type: ignore[attr-defined]


def test_the_sink_listens_on_the_stacks_api_port_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("LOCKGATE_API_PORT", "18740")
    assert SinkSettings().sink_http_port == StackSettings().api_port == 18740


LITERAL = re.compile(r"^`([^`$<~ ]+)`$")


@pytest.mark.parametrize(("var", "users", "default"), ROWS, ids=[r[0] for r in ROWS])
def test_documented_defaults_are_the_defaults(
        var: str, users: tuple[str, ...], default: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    literal = LITERAL.match(default)
    unset = default.startswith("unset")
    for component in users:
        cls = SETTINGS.get(component)
        if cls is None or not (literal or unset):
            continue
        info = cls.model_fields[_field(var)]
        if info.default is PydanticUndefined:
            continue  # computed (default_factory): its row describes it in words
        if unset:
            assert info.default is None, f"{var}: README says unset, {cls.__name__} defaults to {info.default!r}"
            continue
        assert literal is not None
        documented = _parse(cls, _field(var), literal.group(1))
        assert info.default == documented, f"{var}: README says {default}, {cls.__name__} says {info.default!r}"


@pytest.mark.parametrize("component", list(SETTINGS))
def test_every_setting_a_component_reads_is_in_the_table(component: str) -> None:
    documented = {_field(var) for var, users, _ in ROWS if component in users}
    undocumented = set(SETTINGS[component].model_fields) - documented
    assert not undocumented, (f"{component} reads LOCKGATE_{{{', '.join(sorted(undocumented)).upper()}}} "
                              "but the README table does not say so")
