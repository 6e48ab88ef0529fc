"""The proxy's configuration: YAML or TOML, overrides on top, every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.pgproxy.config import load_config
from producers.pgproxy.errors import ProxyConfigError


def test_yaml_and_toml_give_the_same_config(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "upstream: db:5432\nroles: {alice: [dba]}\nblast_radius: {tables: {orders: 10}}\n"
        "images: {tables: {orders: {key: [id]}}}\n")
    (tmp_path / "p.toml").write_text(
        'upstream = "db:5432"\n[roles]\nalice = ["dba"]\n[blast_radius.tables]\norders = 10\n'
        '[images.tables.orders]\nkey = ["id"]\n')
    yaml_cfg, toml_cfg = load_config(tmp_path / "p.yaml"), load_config(tmp_path / "p.toml")
    assert yaml_cfg == toml_cfg
    assert yaml_cfg.upstream_address == ("db", 5432) and yaml_cfg.listen_address == ("127.0.0.1", 6432)
    assert yaml_cfg.roles_of("alice") == ("dba",) and yaml_cfg.roles_of("bob") == ()
    assert yaml_cfg.resource_for("shop", "alice") == "db/shop"


def test_overrides_win_and_none_means_unset(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("upstream: db:5432\nresource: db/prod/{database}\n")
    cfg = load_config(tmp_path / "p.yaml", upstream="other:6543", resource=None)
    assert cfg.upstream == "other:6543" and cfg.resource == "db/prod/{database}"


@pytest.mark.parametrize(("text", "problem"), [
    ("upstream: nowhere\n", "HOST:PORT"),
    ("upstream: db:1\nresource: 'db/{schema}'\n", "{database} and {user}"),
    ("upstream: db:1\nblast_radius: {tables: {t: -1}}\n", ">= 0"),
    ("upstream: db:1\nunknown_key: 1\n", "unknown_key"),
    ("- a list\n", "mapping"),
])
def test_invalid_config_names_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ProxyConfigError) as info:
        load_config(tmp_path / "p.yaml")
    assert problem in str(info.value)


def test_upstream_is_required() -> None:
    with pytest.raises(ProxyConfigError, match="upstream"):
        load_config(None)
