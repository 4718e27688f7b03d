"""Time the review outputs of a finished scan, and how fast the HTML report opens in headless chromium.

    assoc scan /tmp/bench/m2k/bundle --out /tmp/r2k-out -q      # once
    python benchmarks/report_bench.py /tmp/r2k-out [--runs 3]

Prints, for the OUTDIR: reading it back, report.html (generation time, size, pictures),
review_queue.csv, findings.sarif and the graph exports (time, size), then chromium's time to
open the report: wall time of the page load and the browser's own loadEventEnd (parsing the
page and drawing the first page of clusters), the time to filter by a store id, and to draw the
next page of clusters. Needs Debian's chromium and chromium-driver, and selenium.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assoc.report.graph import write_graph_exports
from assoc.report.html import render_html, report_data
from assoc.report.outdir import ScanOutput, read_scan_output
from assoc.report.queue import write_review_queue
from assoc.report.sarif import write_sarif

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1600"]
OPEN_BUDGET_SECONDS = 3.0


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def _size(paths: list[Path]) -> str:
    return f"{sum(p.stat().st_size for p in paths) / 1e6:.1f} MB"


def generate(outdir: Path, runs: int) -> Path:
    seconds, results = _timed(lambda: read_scan_output(outdir))
    print(f"OUTDIR            {outdir}: {len(results.pairs)} pairs, {len(results.clusters)} clusters, "
          f"{len(results.catalog_matches)} catalog matches")
    print(f"read back         {seconds:.2f} s")
    timings = []
    for _ in range(runs):
        seconds, data = _timed(lambda: report_data(results))
        timings.append(seconds)
    render_seconds, html = _timed(lambda: render_html(data))
    path = outdir / "report.html"
    path.write_text(html, encoding="utf-8")
    print(f"report.html       data {statistics.median(timings):.2f} s (median of {runs}) "
          f"+ page {render_seconds:.2f} s; "
          f"{_size([path])}; {len(data['clusters'])} clusters, {len(data['pairs'])} pairs, "
          f"{len(data['pictures'])} pictures")
    _other_outputs(results)
    return path


def _other_outputs(results: ScanOutput) -> None:
    for name, action in (("review_queue.csv", lambda: [write_review_queue(results)]),
                         ("findings.sarif", lambda: [write_sarif(results)]),
                         ("graph exports", lambda: write_graph_exports(results))):
        seconds, written = _timed(action)
        print(f"{name:17s} {seconds:.2f} s; {_size(written)}")


def open_in_chromium(report: Path, runs: int) -> bool:
    """Print open timings; True when every open finished within the budget."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='assoc-bench-')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        walls, loads = [], []
        for _ in range(runs):
            driver.get("about:blank")
            wall, _ = _timed(lambda: driver.get(report.as_uri()))
            WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.ready"))
            walls.append(wall)
            loads.append(driver.execute_script(
                "return performance.getEntriesByType('navigation')[0].loadEventEnd") / 1000)
        print(f"chromium open     wall {statistics.median(walls):.2f} s, loadEventEnd {statistics.median(loads):.2f} s "
              f"(median of {runs}; worst wall {max(walls):.2f} s; budget {OPEN_BUDGET_SECONDS:.0f} s)")
        store = driver.execute_script("return DATA.clusters[DATA.clusters.length - 1].members[0]")
        # The filter itself, without the page's typing pause: applySearch is what the pause calls.
        search = driver.execute_script(
            "const box = document.getElementById('store-search'); box.value = arguments[0];"
            "const start = performance.now(); applySearch(); return (performance.now() - start) / 1000", store)
        first_page = driver.execute_script(
            "document.getElementById('store-search').value = ''; applySearch();"
            "return document.querySelectorAll('section.cluster').length")
        count = "return document.querySelectorAll('section.cluster').length"
        more, drawn = _timed(lambda: (driver.find_element("id", "more-clusters").click(), driver.execute_script(count)))
        print(f"search            {search:.2f} s (filter by {store}); first page {first_page} clusters, "
              f"next page {more:.2f} s ({drawn[1]} drawn)")
        return max(walls) < OPEN_BUDGET_SECONDS
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path, help="the --out folder of a finished `assoc scan`")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    report = generate(args.outdir, args.runs)
    if not open_in_chromium(report, args.runs):
        print(f"FAIL: the report took {OPEN_BUDGET_SECONDS:.0f} s or more to open", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
