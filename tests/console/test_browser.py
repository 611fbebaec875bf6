"""The console in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven by
Selenium): what an operator does with it, end to end, with the page's own script running.

Selenium's calls block, and the console is served from this test's event loop, so every browser
call runs in a worker thread (`Browser`). Skipped, with the reason, where Chromium or its driver
is not installed; `.ci/run` installs both. With DERSYNC_CONSOLE_SCREENSHOT=PATH the operator
test saves the overview there (the README's screenshot).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from dersync.store import Store
from dersync.testing import load, nmi_for, record, wait_for
from tests.console.conftest import OPERATOR, VIEWER, Served, flagged_store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="Chromium and its driver are not installed here (Debian: apt-get install chromium "
                              "chromium-driver; .ci/run installs them)"),
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]
#: Chromium as root in a container, kept off the network (it would otherwise hang on lookups).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1440,1000")
SCREENSHOT = os.environ.get("DERSYNC_CONSOLE_SCREENSHOT")


class Browser:
    """A Chromium session whose every (blocking) call runs in a worker thread."""

    def __init__(self, driver: Any, base: str) -> None:
        self.driver = driver
        self.base = base
        self.marks = 0

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(function, *args)

    async def open(self, path: str) -> None:
        await self.call(self.driver.get, self.base + path)

    async def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return await self.call(self.driver.find_element, By.CSS_SELECTOR, css)

    async def present(self, css: str) -> bool:
        from selenium.webdriver.common.by import By

        return bool(await self.call(self.driver.find_elements, By.CSS_SELECTOR, css))

    async def text(self, css: str) -> str:
        element = await self.find(css)
        return str(await self.call(lambda: element.text))

    async def type(self, css: str, value: str) -> None:
        element = await self.find(css)
        await self.call(element.clear)
        await self.call(element.send_keys, value)

    async def choose(self, css: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        element = await self.find(css)
        await self.call(lambda: Select(element).select_by_value(value))

    async def click(self, css: str, *, confirm: bool = False) -> None:
        """Click something that leads to another page and wait until that page has replaced this
        one, so that the next look reads the new page, not the old one (the driver can return
        from a click before the navigation it starts has finished when the machine is busy). With
        `confirm`, accept the page's confirmation dialog (data-confirm) first."""
        mark = await self._mark()
        element = await self.find(css)
        await self.call(element.click)
        if confirm:
            alert = await wait_for(lambda: self.call(self._alert), "the confirmation dialog", deadline=10)
            await self.call(alert.accept)
        await self._replaced(mark, f"the page after clicking {css}")

    async def back(self) -> None:
        """The browser's Back button, waiting for the previous page to be shown again."""
        mark = await self._mark()
        await self.call(self.driver.back)
        await self._replaced(mark, "the previous page")

    async def _mark(self) -> str:
        """Mark the page now shown with a fresh token; a page shown later, even one restored from
        the back-forward cache, carries another token or none."""
        self.marks += 1
        token = f"page-{self.marks}"
        await self.call(self.driver.execute_script, f"window.dersyncPageMark = '{token}';")
        return token

    async def _replaced(self, token: str, what: str) -> None:
        script = ("return document.readyState === 'complete' && "
                  f"window.dersyncPageMark !== '{token}';")
        await wait_for(lambda: self.call(self.driver.execute_script, script), what, deadline=15, interval=0.1)

    def _alert(self) -> Any:
        from selenium.common.exceptions import NoAlertPresentException

        try:
            alert = self.driver.switch_to.alert
            alert.text  # noqa: B018 - raises when no dialog is open
            return alert
        except NoAlertPresentException:
            return None

    async def path(self) -> str:
        url = str(await self.call(lambda: self.driver.current_url))
        return url[len(self.base):] if url.startswith(self.base) else url

    async def until_text(self, css: str, wanted: Callable[[str], bool], what: str, deadline: float = 15) -> str:
        async def check() -> str | None:
            if not await self.present(css):
                return None
            text = await self.text(css)
            return text if wanted(text) else None

        found: str = await wait_for(check, what, deadline=deadline, interval=0.2)
        return found

    async def sign_in(self, name: str, password: str) -> None:
        await self.open("/")
        assert (await self.path()).startswith("/login")
        await self.type("#name", name)
        await self.type("#password", password)
        await self.click("#sign-in")
        await self.until_text("#user", lambda text: text.startswith(name), "the console after signing in")


@pytest.fixture
async def browser(served: Served, tmp_path: Path) -> AsyncIterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER)
    driver = await asyncio.to_thread(webdriver.Chrome, options=options, service=service)
    try:
        yield Browser(driver, served.url)
    finally:
        await asyncio.to_thread(driver.quit)


async def counts_on_page(browser: Browser, store: Store) -> None:
    status = await store.status()
    for state, count in status["records"].items():
        assert await browser.text(f'#records-by-state td[data-state="{state}"]') == f"{count:,}"
    for level, count in status["open_exceptions"].items():
        assert await browser.text(f'#open-by-level td[data-level="{level}"]') == f"{count:,}"
    assert await browser.text("#due") == f"{status['due']:,}"
    assert await browser.text("#parked") == f"{status['parked']:,}"


async def test_an_operator_signs_in_filters_redrives_parks_and_signs_out(browser: Browser, served: Served) -> None:
    """Sign in; the overview's counts equal the store's; filter the inbox to the open 2023s; open
    an NMI; re-drive every NMI of the filter through the preview and the confirmation dialog;
    park and unpark an NMI with reasons; sign out."""
    nmis = await flagged_store(served.settings, served.store, flagged=24, clean=30)
    await load(served.store, [record(nmi_for(i)) for i in range(60, 66)])  # imported since: pending
    await served.store.park(nmis[5], actor="olivia", reason="meter change pending")
    await browser.sign_in(*OPERATOR)
    await counts_on_page(browser, served.store)
    if SCREENSHOT:
        served.runtime.live.started("sync")
        served.runtime.live.progress(4, 6)
        await browser.open("/")
        await browser.until_text("#progress", lambda text: "4 of 6" in text, "the live pass on the overview")
        Path(SCREENSHOT).parent.mkdir(parents=True, exist_ok=True)
        await browser.call(browser.driver.save_screenshot, SCREENSHOT)
        served.runtime.live.finished("sync")

    await browser.click('a[href="/exceptions"]')
    await browser.choose("#f-level", "second")
    await browser.type("#f-code", "2023")
    await browser.choose("#f-status", "open")
    await browser.click("#apply-filter")
    assert await browser.text("#match-count") == "24"
    assert "level=second" in await browser.path() and "code=2023" in await browser.path()

    await browser.click(f'#exceptions a[href="/nmi/{nmis[3]}"]')
    assert await browser.text("#nmi") == nmis[3]
    assert "2023" in await browser.text("#nmi-exceptions")
    await browser.back()

    await browser.click("#redrive-matching")
    assert await browser.text("#preview-count") == "24 NMIs"
    assert "1 of them are parked" in await browser.text("#preview-parked")
    assert await served.store.count_due() == 6  # the preview changed nothing
    await browser.type("#redrive-reason", "AEMO added the AP-5000 to its approved list")
    await browser.click("#confirm-redrive", confirm=True)
    await browser.until_text("#done", lambda text: text.startswith("Re-drive recorded"), "the re-drive's result")
    assert await served.store.count_due() == 6 + 23
    assert "AEMO added the AP-5000" in await browser.text("#recent-actions")

    await browser.open(f"/nmi/{nmis[7]}")
    await browser.type("#park-reason", "installer correcting serial numbers")
    await browser.click("#park", confirm=True)
    await browser.until_text("#done", lambda text: text.startswith("Parked"), "the park's result")
    assert "installer correcting serial numbers" in await browser.text("#parked-note")
    assert await served.store.count_due() == 6 + 22
    await browser.type("#unpark-reason", "serials fixed")
    await browser.click("#unpark", confirm=True)
    await browser.until_text("#done", lambda text: text.startswith("Unparked"), "the unpark's result")
    assert not await browser.present("#parked-badge")
    actions = await browser.text("#actions")
    assert "unpark" in actions and "installer correcting serial numbers" in actions and "serials fixed" in actions

    await browser.click("#sign-out")
    await browser.until_text("h1", lambda text: text == "Sign in", "the sign-in page")
    await browser.open("/exceptions")
    assert (await browser.path()).startswith("/login")


async def test_a_viewer_reads_but_is_offered_no_action(browser: Browser, served: Served) -> None:
    """A viewer sees the inbox and NMI pages, with no re-drive, park or unpark, and a preview
    page without the confirmation."""
    nmis = await flagged_store(served.settings, served.store, flagged=3)
    await browser.sign_in(*VIEWER)
    await browser.open("/exceptions")
    assert await browser.text("#match-count") == "3"
    assert not await browser.present("#redrive-matching") and not await browser.present('input[form="selected"]')
    await browser.open(f"/nmi/{nmis[0]}")
    assert not await browser.present("#park") and not await browser.present("#redrive")
    await browser.open("/redrive?by=filter&level=second&status=open")
    assert await browser.text("#preview-count") == "3 NMIs" and not await browser.present("#confirm-redrive")


async def test_a_form_from_an_earlier_session_is_refused(browser: Browser, served: Served) -> None:
    """A page left open across a sign-out and a new sign-in (another tab) carries the old
    session's CSRF token: submitting its form is refused and nothing is parked."""
    nmis = await flagged_store(served.settings, served.store, flagged=1)
    await browser.sign_in(*OPERATOR)
    await browser.open(f"/nmi/{nmis[0]}")
    first_tab = await browser.call(lambda: browser.driver.current_window_handle)
    await browser.call(browser.driver.switch_to.new_window, "tab")
    await browser.open("/")
    await browser.click("#sign-out")
    await browser.until_text("h1", lambda text: text == "Sign in", "the sign-in page")
    await browser.sign_in(*OPERATOR)
    await browser.call(browser.driver.switch_to.window, first_tab)
    await browser.type("#park-reason", "from a stale page")
    await browser.click("#park", confirm=True)
    message = await browser.until_text("#error", lambda text: "security token" in text, "the refusal")
    assert "stale" in message
    assert (await served.store.status())["parked"] == 0


async def test_the_overview_refreshes_itself_while_a_pass_runs(browser: Browser, served: Served) -> None:
    """With a pass running, the overview's live part updates by itself (the page is not
    reloaded), and says so when the pass ends."""
    await load(served.store, [record(nmi_for(i)) for i in range(3)])
    served.runtime.live.started("sync")
    served.runtime.live.progress(1, 3)
    await browser.sign_in(*VIEWER)
    await browser.until_text("#progress", lambda text: text.startswith("1 of 3"), "the pass on the overview")
    await browser.call(browser.driver.execute_script, "window.dersyncTestMarker = 'same page';")
    served.runtime.live.progress(2, 3)
    await browser.until_text("#progress", lambda text: text.startswith("2 of 3"), "the overview to refresh")
    served.runtime.live.finished("sync")
    await browser.until_text("#idle", lambda text: "No pass is running" in text, "the pass's end on the overview")
    marker = await browser.call(browser.driver.execute_script, "return window.dersyncTestMarker;")
    assert marker == "same page"
