"""The dashboard in a real headless Chromium over the real pipeline.

Guard → processor (verdict + ledger) → sink → embedded ClickHouse → HTTP API → dashboard.
Chromium is Debian's ``/usr/bin/chromium`` (``make browser-deps`` installs it; Playwright's
own browser download cannot work here), driven by Python Playwright. Without that binary
the test skips and says why.
"""

from __future__ import annotations

import re
import uuid

import pytest

from producers import ActionBlocked
from tests.integration.chromium import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, needs_chromium
from tests.integration.conftest import ProcessorHandle, Sink

pytestmark = [pytest.mark.integration, pytest.mark.browser, needs_chromium]


def test_blocked_action_streams_in_and_drills_down(
        pipeline: tuple[ProcessorHandle, Sink, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    processor, sink, token = pipeline
    actor = f"dana-{uuid.uuid4().hex[:6]}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{sink.url}/?token={token}")
            # The token moves to session storage and out of the address bar.
            assert "token=" not in page.url
            expect(page.get_by_test_id("status")).to_contain_text("live")

            with processor.guard() as guard:
                with guard.action(actor=actor, type="db.query", resource="db/prod/orders",
                                  attributes={"sql": "UPDATE orders SET total = 1 WHERE id = 7"}):
                    pass
                with pytest.raises(ActionBlocked) as info:
                    with guard.action(actor=actor, type="db.query", resource="db/prod/orders",
                                      attributes={"sql": "DELETE FROM orders"}):
                        raise AssertionError("a blocked action must not run")
            verdict = info.value.verdict
            assert verdict.reason

            # The blocked action appears in the live stream with its verdict.
            row = page.locator(f'[data-testid="action-row"][data-id="{verdict.action_id}"]')
            expect(row).to_be_visible()
            expect(row.locator("td.block")).to_have_text("block")
            expect(row).to_contain_text(actor)

            row.click()
            drill = page.get_by_test_id("drill")
            expect(drill).to_be_visible()
            expect(page.get_by_test_id("drill-action-id")).to_have_text(verdict.action_id)
            expect(drill.get_by_test_id("drill-actor")).to_have_text(actor)
            expect(drill.get_by_test_id("drill-decision")).to_have_text("block")
            expect(drill.get_by_test_id("drill-reason")).to_have_text(verdict.reason)
            rule = drill.get_by_test_id("drill-rule")
            expect(rule).to_have_count(1)
            expect(rule.get_by_test_id("drill-rule-id")).to_have_text(
                "prod-delete-update-without-where")
            expect(rule.get_by_test_id("drill-rule-effect")).to_have_text("block")
            expect(rule.get_by_test_id("drill-rule-mode")).to_have_text("enforce")
            expect(drill).to_contain_text("DELETE FROM orders")
            expect(drill.get_by_test_id("drill-event")).to_have_count(2)  # action + verdict
            # Rendered from the chained payloads, and checked against the chain and the views.
            expect(drill.get_by_test_id("drill-integrity")).to_have_attribute("data-ok", "true")
            expect(drill.get_by_test_id("drill-chain")).to_contain_text("chain: ok")
            expect(drill.get_by_test_id("drill-views")).to_contain_text("match the payloads")

            # The side panels: allow/block over time, top blocking rules, top actors.
            expect(page.get_by_test_id("timeline").locator(".bar").first).to_be_attached()
            # The bars are drawn, not just present: some block segment has a visible height.
            page.wait_for_function(
                "() => [...document.querySelectorAll('[data-testid=timeline] .bar .b')]"
                ".some((el) => el.getBoundingClientRect().height > 0)", timeout=TIMEOUT_MS)
            expect(page.get_by_test_id("totals")).to_have_text(
                re.compile(r"^allow [1-9]\d* · block [1-9]\d* · block rate \d+(\.\d)?%$"))
            expect(page.get_by_test_id("top-blocking-rules")).to_contain_text(
                "prod-delete-update-without-where")
            expect(page.get_by_test_id("top-actor").filter(has_text=actor)).to_contain_text(
                "2 actions")
        finally:
            browser.close()
