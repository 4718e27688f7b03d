"""The HTML report in a real browser: Debian's chromium, headless, driven by selenium over chromedriver.

The page is opened from disk with the browser's network switched off (DevTools offline
emulation), and every request the browser makes is read back from its DevTools log: only the
file itself and data: URIs may appear. A control page that does reach out shows that the check
sees requests when there are some.

Chromium is required in CI (CI=true): there the test fails if it is missing. Elsewhere it is
skipped without chromium. Install: apt-get install -y chromium chromium-driver; pip install selenium.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assoc.report.html import write_html_report
from assoc.report.outdir import read_scan_output

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1600"]


def _browser_or_skip() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (shutil.which(p) or os.path.exists(p))]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return
    message = (f"browser test needs {', '.join(missing)} "
               "(apt-get install chromium chromium-driver; pip install selenium)")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def start_chromium(profile: Path) -> Any:
    """A headless chromium under chromedriver, logging DevTools network events, with the network off."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions",
                           {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    return driver


def open_page(driver: Any, url: str, timeout: float = 30.0) -> list[str]:
    """Load `url`, wait until the report says it is drawn, and return every URL the browser requested."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    driver.get_log("performance")  # drain: start pages and about:blank are not the report's requests
    driver.get(url)
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.readyState") == "complete")
    return requested_urls(driver)


def requested_urls(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    _browser_or_skip()
    browser = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield browser
    browser.quit()


@pytest.fixture
def report(tmp_path: Path) -> Path:
    from test_report_html import copy_example_outdir

    return write_html_report(read_scan_output(copy_example_outdir(tmp_path / "out")))


def _visible(driver: Any, selector: str) -> list[Any]:
    # One script call instead of a WebDriver round trip per element.
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].filter(e => e.checkVisibility())", selector)


def test_report_opens_offline_shows_clusters_evidence_and_masks(driver, report, tmp_path):
    urls = open_page(driver, report.as_uri())
    assert driver.execute_script("return document.body.dataset.ready") == "true"
    outside = [u for u in urls if not u.startswith(("file:", "data:"))]
    assert not outside, f"the report made requests: {outside}"
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(r.startswith(("file:", "data:")) for r in resources), resources

    results = read_scan_output(report.parent)
    clusters = _visible(driver, "section.cluster")
    assert [c.get_attribute("data-cluster") for c in clusters] == [c.cluster_id for c in results.clusters]
    assert len(driver.find_elements("css selector", "svg.diagram .identifier-node")) > 0
    assert not _visible(driver, "tr.evidence-row"), "waterfalls start folded"
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element("css selector", "section.cluster details summary").click()
    # The toggle event that builds a waterfall is a task of its own: wait for its rows.
    rows = WebDriverWait(driver, 30).until(lambda d: _visible(d, "section.cluster tr.evidence-row"))
    first = results.cluster_pairs(results.clusters[0].cluster_id)[0]
    assert [r.find_element("css selector", "td").text for r in rows] == [s.evidence.code for s in first.waterfall()]
    assert _visible(driver, "section.cluster .catalog img"), "catalog pictures of the first pair"
    driver.execute_script("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    expected = sum(len(p.evidence) for p in results.pairs if p.linked)
    # Unfolding fires the toggle events that build the waterfalls as tasks of their own: wait for them.
    WebDriverWait(driver, 30).until(lambda d: len(d.find_elements("css selector", "tr.evidence-row")) == expected)

    text = driver.find_element("tag name", "body").text
    assert "6222 **** ****" in text  # a masked payout account of the example's top cluster
    raw = [e.value for p in results.pairs for e in p.evidence if e.kind == "payment_account"]
    assert raw and not any(v in driver.page_source for v in raw)
    driver.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_search_box_filters_clusters_by_store_id(driver, report):
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(driver, report.as_uri())
    results = read_scan_output(report.parent)
    total = len(results.clusters)
    target = results.clusters[-1]
    box = driver.find_element("id", "store-search")
    status = driver.find_element("id", "search-status")

    def search(text: str, expect: str) -> list[str]:
        box.clear()
        box.send_keys(text)
        # The page redraws once typing pauses; its status line says when it has.
        WebDriverWait(driver, 30).until(lambda _: status.text.startswith(expect))
        return [c.get_attribute("data-cluster") for c in _visible(driver, "section.cluster")]

    assert search(target.members[-1].lower(), f"1 of {total} clusters") == [target.cluster_id]  # ignores case
    assert search("no-such-store", f"0 of {total} clusters") == []
    assert len(search(" ", f"{total} clusters")) == total  # a blank query shows everything again


def test_the_request_check_sees_requests_when_a_page_makes_them(driver, tmp_path):
    page = tmp_path / "leaky.html"
    page.write_text('<img src="http://127.0.0.1:9/pixel.png"><script>fetch("https://example.invalid/x")</script>',
                    encoding="utf-8")
    urls = open_page(driver, page.as_uri())
    assert "http://127.0.0.1:9/pixel.png" in urls
