"""The dashboard's review inbox in a real headless Chromium over the real pipeline.

``lockgate submit --wait-review 60`` holds a production DELETE (the example policy's review
rule); the inbox page, opened before, shows the pending review without a reload; the
requester's own reviewer token is refused (self-approval, by identity); a second person
approves with a reason from the page; the waiting submit exits 0 with basis
``review_approved``. A read token sees the inbox but cannot vote.
"""

from __future__ import annotations

import uuid

import pytest

from lockgate.kernel.home import Home
from sinks.tokens import create_token
from tests.integration.chromium import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, needs_chromium
from tests.integration.conftest import ProcessorHandle, Sink
from tests.integration.held_submit import HeldSubmits
from trust.reviewers import ReviewerRegistry

pytestmark = [pytest.mark.integration, pytest.mark.browser, needs_chromium]

SQL = "DELETE FROM customers WHERE id = 7"


def test_reviewer_approves_from_the_inbox_and_the_waiting_submit_runs(
        pipeline: tuple[ProcessorHandle, Sink, str], submit_held: HeldSubmits) -> None:
    from playwright.sync_api import Page, expect, sync_playwright

    processor, sink, read_token = pipeline
    tag = uuid.uuid4().hex[:6]
    dana, bob, requester = f"dana-{tag}", f"bob-{tag}", f"Bob.Smith-{tag}@corp.example"
    registry = ReviewerRegistry(Home(processor.home).keys)
    registry.add_reviewer(dana, ["dba"])
    registry.add_reviewer(bob, ["dba"], [requester.lower()])  # the requester is a DBA too
    dana_token = create_token(processor.home, "default", label="dana inbox", reviewer=dana)[1]
    bob_token = create_token(processor.home, "default", label="bob inbox", reviewer=bob)[1]
    marker = f"GDPR erasure {tag}"

    def inbox(page: Page, token: str) -> None:
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{sink.url}/reviews?token={token}")
        assert "token=" not in page.url
        expect(page.get_by_test_id("status")).to_contain_text("live")
        page.evaluate("window.lockgateNotReloaded = true")  # gone if the page reloads

    # The pipeline answers at its own pace (a submit process starting, a loaded box):
    # assertions wait as long as actions do, not Playwright's default 5 s.
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            pages = {who: browser.new_page() for who in ("dana", "bob", "reader")}
            inbox(pages["dana"], dana_token)
            inbox(pages["bob"], bob_token)
            inbox(pages["reader"], read_token)
            expect(pages["dana"].get_by_test_id("who")).to_contain_text(f"voting as reviewer {dana}")

            submit = submit_held(processor, actor=requester, sql=SQL, justification=marker, wait_review_s=60)

            rows = {who: page.get_by_test_id("review-row").filter(has_text=marker) for who, page in pages.items()}
            for row in rows.values():
                expect(row).to_have_count(1)  # appeared live
            expect(rows["dana"].get_by_test_id("requester")).to_contain_text(requester)
            expect(rows["dana"]).to_contain_text(SQL)
            expect(rows["dana"].get_by_test_id("approvals")).to_have_text("0 of 1")
            expect(rows["reader"].get_by_test_id("approve")).to_be_disabled()  # a read token cannot vote

            # The requester's own reviewer token: refused by identity, shown on the page.
            rows["bob"].get_by_test_id("review-reason").fill("looks fine to me")
            rows["bob"].get_by_test_id("approve").click()
            result = pages["bob"].get_by_test_id("vote-result")
            expect(result).to_have_attribute("data-outcome", "security")
            expect(result).to_contain_text("self-approval refused")
            assert submit.waiting(), "the action was decided by a self-approval"

            # A second person approves with a reason.
            rows["dana"].get_by_test_id("review-reason").fill(f"ticket OPS-{tag}")
            rows["dana"].get_by_test_id("approve").click()
            result = pages["dana"].get_by_test_id("vote-result")
            expect(result).to_have_attribute("data-outcome", "accepted")
            expect(result).to_contain_text("The review is approved")

            ended = submit.wait_result(90)
            assert ended.returncode == 0, ended.stderr
            verdict = ended.verdict
            assert verdict["decision"] == "allow" and verdict["basis"] == "review_approved"
            assert dana in verdict["reason"] and bob not in verdict["reason"]

            # Every open page moves it to the decided list by itself, and none reloaded.
            for who, page in pages.items():
                decided = page.get_by_test_id("decided-row").filter(has_text=requester)
                expect(decided.get_by_test_id("decided-status")).to_have_text("approved")
                expect(rows[who]).to_have_count(0)
                assert page.evaluate("window.lockgateNotReloaded === true"), f"{who}'s page reloaded"
        finally:
            browser.close()
            expect.set_options(timeout=5_000)
