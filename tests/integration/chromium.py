"""Headless Chromium for browser tests: Debian's binary, driven by Python Playwright.

``make browser-deps`` installs ``/usr/bin/chromium`` (Playwright's own browser download
cannot work here); without it, browser tests skip and say why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
TIMEOUT_MS = 60_000

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is not installed: run `make browser-deps` as root or "
           "`sudo apt-get install -y chromium` (Playwright's own download cannot work here)",
)
