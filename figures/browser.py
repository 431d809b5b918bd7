"""Open a report in headless Chromium as a reader would: console errors, figures drawn, load time.

Uses the system Chromium (Debian's ``chromium``; ``LANDSCAPE_CHROMIUM`` to point elsewhere)
driven by Playwright, which downloads no browser of its own. The network is cut off for the page
(every request beyond the file itself is aborted and counted), so a figure that needed a CDN fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    for candidate in (os.environ.get("LANDSCAPE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


@dataclass
class PageCheck:
    figures: int  # figure containers on the page
    drawn: list[str] = field(default_factory=list)  # names of those with a drawn plotly SVG
    missing: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    load_s: float = float("nan")  # navigation until every figure is drawn
    size_mib: float = float("nan")
    screenshot: Path | None = None

    @property
    def ok(self) -> bool:
        return self.figures > 0 and not self.missing and not self.console_errors and not self.external_requests

    def problems(self) -> str:
        out = []
        if self.figures == 0:
            out.append("no figures on the page")
        if self.missing:
            out.append(f"not drawn: {', '.join(self.missing)}")
        if self.console_errors:
            out.append(f"console: {self.console_errors[0]}")
        if self.external_requests:
            out.append(f"fetched from outside: {self.external_requests[0]}")
        return "; ".join(out)

    def summary(self) -> str:
        return (
            f"browser check: {len(self.drawn)}/{self.figures} figures drawn, {len(self.console_errors)} console "
            f"errors, {len(self.external_requests)} outside requests, {self.size_mib:.1f} MiB, loaded in "
            f"{self.load_s:.2f} s; screenshot {self.screenshot}"
        )


def check_page(page: Path, screenshot: Path | None = None, *, timeout_s: float = 120.0) -> PageCheck:
    """Load ``page`` from disk in headless Chromium and report what a reader would see."""
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found (install Debian's chromium, or set LANDSCAPE_CHROMIUM)")
    page = Path(page).resolve()
    url = page.as_uri()
    folder = page.parent.as_uri() + "/"
    errors: list[str] = []
    outside: list[str] = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            tab = context.new_page()
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))

            def route(r):
                if r.request.url.startswith((folder, "data:")):  # the page and files beside it
                    return r.continue_()
                outside.append(r.request.url)
                return r.abort()

            tab.route("**/*", route)
            start = time.perf_counter()
            tab.goto(url, wait_until="load", timeout=timeout_s * 1000)
            names = tab.eval_on_selector_all(".ls-figure", "els => els.map(e => e.dataset.name)")
            with contextlib.suppress(Exception):  # some figure never drew: reported below as missing
                tab.wait_for_function(
                    "() => [...document.querySelectorAll('.ls-figure')].every(e => e.querySelector('.main-svg'))",
                    timeout=timeout_s * 1000,
                )
            load_s = time.perf_counter() - start
            drawn = tab.eval_on_selector_all(
                ".ls-figure",
                "els => els.filter(e => e.querySelector('.main-svg') && e.querySelector('.plot-container')).map(e => e.dataset.name)",
            )
            if screenshot is not None:
                tab.screenshot(path=str(screenshot), full_page=True)
        finally:
            context.close()
    return PageCheck(
        figures=len(names),
        drawn=drawn,
        missing=[n for n in names if n not in drawn],
        console_errors=errors,
        external_requests=outside,
        load_s=load_s,
        size_mib=page.stat().st_size / 2**20,
        screenshot=screenshot,
    )


def check_or_refuse(page: Path) -> PageCheck:
    """``--check`` of a command that wrote ``page``: open it, print the summary, screenshot beside
    it; a page that did not render cleanly is an error (one line)."""
    check = check_page(page, Path(page).with_name("screenshot.png"))
    print(check.summary())
    if not check.ok:
        raise ValueError(f"the page did not render cleanly: {check.problems()}")
    return check
