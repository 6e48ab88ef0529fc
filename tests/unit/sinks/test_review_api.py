"""The review inbox routes: who may read, who may vote, and as whom (least privilege)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from sinks.api import ApiServer
from sinks.query import AuditQueries
from sinks.tokens import TokenStore, create_token
from trust.errors import ReviewNotFound
from trust.review_votes import VoteResult


class FakeInbox:
    """Records every vote it is asked to cast and answers with a chosen outcome."""

    def __init__(self) -> None:
        self.votes: list[tuple[str, str | None, str, str, str]] = []
        self.outcome = "accepted"

    def listing(self, tenant: str | None) -> dict[str, Any]:
        return {"pending": [{"review_id": "rv-1", "tenant": tenant}], "decided": [], "records": 2, "ready": True,
                "problem": None}

    def vote(self, reviewer: str, tenant: str | None, ref: str, vote: str, reason: str) -> VoteResult:
        if ref == "rv-missing":
            raise ReviewNotFound("no review(s) match 'rv-missing'")
        self.votes.append((reviewer, tenant, ref, vote, reason))
        return VoteResult(ref, "a1", "v1", reviewer, vote, self.outcome, "because", None)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[ApiServer, FakeInbox, dict[str, str]]]:
    inbox = FakeInbox()
    tokens = {"read": create_token(tmp_path, "default")[1],
              "dana": create_token(tmp_path, "default", reviewer="dana")[1],
              "ops": create_token(tmp_path, "*", reviewer="omar")[1]}
    server = ApiServer(cast(AuditQueries, object()), TokenStore(tmp_path), port=0, inbox=inbox)
    server.start()
    try:
        yield server, inbox, tokens
    finally:
        server.stop()


def _vote(server: ApiServer, token: str, body: Any, ref: str = "rv-1", ctype: str = "application/json",
          params: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, out, _ = server.post(f"/api/reviews/{ref}/vote", params or {}, raw, ctype, f"Bearer {token}")
    return status, json.loads(out)


def test_a_read_token_lists_the_inbox_but_cannot_vote(api: tuple[ApiServer, FakeInbox, dict[str, str]]) -> None:
    server, inbox, tokens = api
    status, body, _ = server.route("/api/reviews", {}, f"Bearer {tokens['read']}")
    listing = json.loads(body)
    assert status == 200 and listing["token"] == {"tenant": "default", "reviewer": None}
    assert listing["pending"][0]["tenant"] == "default"  # the token's tenant is forced
    status, out = _vote(server, tokens["read"], {"vote": "approve", "reason": "ok"})
    assert status == 403 and "reviewer token" in out["error"] and inbox.votes == []


def test_a_reviewer_token_votes_only_as_its_reviewer(api: tuple[ApiServer, FakeInbox, dict[str, str]]) -> None:
    server, inbox, tokens = api
    status, out = _vote(server, tokens["dana"], {"vote": "approve", "reason": " ticket 42 "})
    assert status == 200 and out["reviewer"] == "dana"
    assert inbox.votes == [("dana", "default", "rv-1", "approve", "ticket 42")]
    status, out = _vote(server, tokens["dana"], {"vote": "approve", "reason": "x", "reviewer": "omar"})
    assert status == 400 and "the reviewer is the token's" in out["error"]
    status, out = _vote(server, tokens["dana"], {"vote": "approve", "reason": "x"}, params={"tenant": "acme"})
    assert status == 403  # a tenant the token may not see
    status, out = _vote(server, tokens["ops"], {"vote": "deny", "reason": "no"})
    assert status == 200 and inbox.votes[-1] == ("omar", None, "rv-1", "deny", "no")
    assert len(inbox.votes) == 2


def test_a_reviewer_token_reaches_nothing_but_the_inbox(api: tuple[ApiServer, FakeInbox, dict[str, str]]) -> None:
    server, _, tokens = api
    for path in ("/api/actions", "/api/stats", "/api/actions/a1", "/api/checkpoints", "/api/verify/summary"):
        status, body, _ = server.route(path, {}, f"Bearer {tokens['ops']}")
        assert status == 403 and "only the review inbox" in json.loads(body)["error"], path
    status, body, _ = server.route("/api/reviews", {}, f"Bearer {tokens['dana']}")
    assert status == 200 and json.loads(body)["token"]["reviewer"] == "dana"


@pytest.mark.parametrize(("body", "ctype", "error"), [
    ({"vote": "approve", "reason": ""}, "application/json", "give a reason"),
    ({"vote": "approve"}, "application/json", "give a reason"),
    ({"vote": "maybe", "reason": "x"}, "application/json", "vote must be one of"),
    (b"not json", "application/json", "not JSON"),
    ([1, 2], "application/json", "an object"),
    ({"vote": "approve", "reason": "x"}, "text/plain", "application/json"),
])
def test_malformed_votes_are_400_and_never_cast(api: tuple[ApiServer, FakeInbox, dict[str, str]], body: Any,
                                                ctype: str, error: str) -> None:
    server, inbox, tokens = api
    status, out = _vote(server, tokens["dana"], body, ctype=ctype)
    assert status == 400 and error in out["error"] and inbox.votes == []


@pytest.mark.parametrize(("outcome", "status"), [("accepted", 200), ("refused", 409), ("security", 403),
                                                 ("unknown", 202)])
def test_the_vote_status_says_what_the_processor_will_make_of_it(
        api: tuple[ApiServer, FakeInbox, dict[str, str]], outcome: str, status: int) -> None:
    server, inbox, tokens = api
    inbox.outcome = outcome
    got, out = _vote(server, tokens["dana"], {"vote": "approve", "reason": "x"})
    assert (got, out["outcome"]) == (status, outcome)


def test_unknown_review_and_bad_token_and_route(api: tuple[ApiServer, FakeInbox, dict[str, str]]) -> None:
    server, _, tokens = api
    assert _vote(server, tokens["dana"], {"vote": "approve", "reason": "x"}, ref="rv-missing")[0] == 404
    assert _vote(server, "lg_forged", {"vote": "approve", "reason": "x"})[0] == 401
    status, _, _ = server.post("/api/actions", {}, b"{}", "application/json", f"Bearer {tokens['dana']}")
    assert status == 404
