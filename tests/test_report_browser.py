"""report.html in a real headless Chromium: a failure's evidence is two clicks away.

Uses Debian's ``chromium`` and ``chromedriver`` through selenium; skips with the reason
when either is missing (browser downloads do not work on build machines).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from test_reports import CATALOG, FEATURES, VERSION, sample_run

from conformance.reports import write_html

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER",
                              shutil.which("chromedriver") or "/usr/bin/chromedriver")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install 'virtio-conformance[test]')")
from selenium.webdriver.common.by import By  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"no Chromium at {CHROMIUM} (apt-get install chromium, "
                              "or set CHROMIUM)"),
    pytest.mark.skipif(not os.access(CHROMEDRIVER, os.X_OK),
                       reason=f"no chromedriver at {CHROMEDRIVER} (apt-get install "
                              "chromium-driver, or set CHROMEDRIVER)"),
]


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="report-browser-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,900",
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    return write_html(sample_run(), path, CATALOG)


def in_viewport(driver, element) -> bool:
    return driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return r.top > -2 && r.top < window.innerHeight && r.height > 0;", element)


def test_failure_evidence_two_clicks_from_summary(browser, report):
    browser.get(report.as_uri())
    assert browser.title.startswith("virtio conformance report")
    summary = browser.find_element(By.ID, "dev-virtio-blk-summary")
    fail_count = summary.find_element(By.CSS_SELECTOR, "a[data-verdict='FAIL']")
    assert fail_count.is_displayed()
    assert fail_count.find_element(By.CLASS_NAME, "n").text == "2"

    fail_count.click()  # click 1: to the list of this device's failures
    listing = browser.find_element(By.ID, "dev-virtio-blk-fail")
    assert browser.current_url.endswith("#dev-virtio-blk-fail")
    assert in_viewport(browser, listing)
    entry = listing.find_element(By.PARTIAL_LINK_TEXT, VERSION)
    assert entry.is_displayed()

    entry.click()  # click 2: to the evidence itself
    target = browser.current_url.rsplit("#", 1)[1]
    evidence = browser.find_element(By.ID, target)
    assert in_viewport(browser, evidence)
    assert evidence.is_displayed()
    text = evidence.text
    assert VERSION in text
    assert "Version (0x004)" in text
    assert "read32(0xfeb00e04) -> 0x00000001" in text
    assert "--clause " + VERSION in text
    observed = evidence.find_element(By.CSS_SELECTOR, "td.observed.bad")
    assert observed.text == "1" and observed.is_displayed()
    # The evidence block is the :target, so it is highlighted for the reader.
    shadow = browser.execute_script(
        "return getComputedStyle(arguments[0]).boxShadow;", evidence)
    assert shadow and shadow != "none"


def test_waived_failure_visible_with_badge(browser, report):
    browser.get(report.as_uri() + "#dev-virtio-blk-fail")
    listing = browser.find_element(By.ID, "dev-virtio-blk-fail")
    listing.find_element(By.PARTIAL_LINK_TEXT, FEATURES).click()
    evidence = browser.find_element(By.ID, browser.current_url.rsplit("#", 1)[1])
    badge = evidence.find_element(By.CLASS_NAME, "waiver")
    assert badge.is_displayed()
    assert "QEMU bug 1234" in badge.text and "2025-12-31" in badge.text
    assert evidence.find_element(By.CSS_SELECTOR, "h4 .v-FAIL").text == "FAIL"


def test_screenshot_renders(browser, report, tmp_path):
    browser.get(report.as_uri())
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("REPORT_SCREENSHOT")  # set to keep a copy for a human to look at
    if keep:
        shutil.copy(shot, keep)
