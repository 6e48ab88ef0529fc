"""Tokens: hashed at rest in a 0600 file, tenant-bound, revocable, 401 on anything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sinks.errors import AuthError, SinkError
from sinks.tokens import TOKEN_FILE, TokenStore, create_token, list_tokens, revoke_token


def test_create_list_authenticate_revoke(tmp_path: Path) -> None:
    info, secret = create_token(tmp_path, "acme", "ci")
    path = tmp_path / TOKEN_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert secret not in path.read_text()
    assert json.loads(path.read_text())["tokens"][0]["tenant"] == "acme"
    assert [t.token_id for t in list_tokens(tmp_path)] == [info.token_id]
    store = TokenStore(tmp_path)
    assert store.authenticate(f"Bearer {secret}").tenant == "acme"
    assert revoke_token(tmp_path, info.token_id) is True
    assert revoke_token(tmp_path, info.token_id) is False
    with pytest.raises(AuthError) as err:
        store.authenticate(f"Bearer {secret}")
    assert err.value.status == 401


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer nope"])
def test_bad_headers_are_401(tmp_path: Path, header: str | None) -> None:
    create_token(tmp_path, "acme")
    with pytest.raises(AuthError) as err:
        TokenStore(tmp_path).authenticate(header)
    assert err.value.status == 401


def test_loose_permissions_refused(tmp_path: Path) -> None:
    create_token(tmp_path, "acme")
    (tmp_path / TOKEN_FILE).chmod(0o644)
    with pytest.raises(SinkError, match="chmod 600"):
        list_tokens(tmp_path)


def test_invalid_tenant_refused(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="tenant"):
        create_token(tmp_path, "a b")


def test_reviewer_tokens_name_their_reviewer_and_old_files_still_load(tmp_path: Path) -> None:
    info, secret = create_token(tmp_path, "acme", "dana's inbox", reviewer="dana")
    assert TokenStore(tmp_path).authenticate(f"Bearer {secret}").reviewer == "dana" == info.reviewer
    with pytest.raises(SinkError, match="reviewer name"):
        create_token(tmp_path, "acme", reviewer="dana; drop")
    path = tmp_path / TOKEN_FILE
    data = json.loads(path.read_text())
    for entry in data["tokens"]:
        del entry["reviewer"]  # a file written before reviewer tokens existed
    path.write_text(json.dumps(data))
    assert [t.reviewer for t in list_tokens(tmp_path)] == [""]
