"""report.html in a real browser: headless Chromium loads it offline, logs no console error, and every
Plotly figure renders (each plot div holds an svg.main-svg). A full-page screenshot is saved under
test-artifacts/ for a human to look at.

Skips when Chromium or chromedriver is missing, except under CI (env CI set), where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import report_factory as factory

from deploybench.config import Constraints
from deploybench.report import write_report
from deploybench.report.compare import compare_studies
from deploybench.results import MachineInfo

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    if missing:
        message = f"browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def browser(tmp_path: Path):
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _network_requests(driver) -> list[str]:
    """http(s)/ws URLs requested (file:, data: and the browser's own chrome:// pages are not the network)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return [u for u in urls if u.startswith(("http:", "https:", "ws:", "wss:"))]


def _load_and_check(driver, html: Path, screenshot: str) -> dict[str, int]:
    """Open the report, wait for every plot to draw, save a screenshot, return counts; assert no errors."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(html.resolve().as_uri())
    count_js = (
        "const divs = [...document.querySelectorAll('div.plotly-graph-div')];"
        "return {plots: divs.length, rendered: divs.filter(d => d.querySelector('svg.main-svg')).length};"
    )
    WebDriverWait(driver, 60).until(
        lambda d: (c := d.execute_script(count_js))["plots"] and c["plots"] == c["rendered"]
    )
    counts = driver.execute_script(count_js)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(int(height) + 40, 12_000))
    ARTIFACTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / screenshot))
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], f"console errors: {errors}"
    assert _network_requests(driver) == []  # self-contained: works offline
    return counts


@pytest.mark.slow
def test_report_renders_every_plot_offline_without_console_errors(tmp_path: Path, browser) -> None:
    study = factory.write_study(tmp_path / "study", factory.cpu_study_trials(weights="random"))
    result = write_report(study, Constraints(p99_ms=100), target_rps=500, headroom=0.2)

    counts = _load_and_check(browser, result.html_path, "report.png")

    assert counts == {"plots": 5, "rendered": 5}
    headline = browser.find_element("css selector", "#recommendation .headline").text
    assert headline.startswith("Recommended: openvino-int8")
    assert "Random weights" in browser.find_element("id", "weights-warning").text


@pytest.mark.slow
def test_compare_report_renders_in_chromium(tmp_path: Path, browser) -> None:
    gpu = MachineInfo(label="ml.g4dn.xlarge", instance="ml.g4dn.xlarge", price_per_hour=0.7364, gpu="T4")
    cpu_dir = factory.write_study(tmp_path / "cpu", factory.cpu_study_trials())
    gpu_dir = factory.write_study(
        tmp_path / "gpu",
        [
            factory.make_trial("eager", capacity_rps=60, machine=gpu),
            factory.make_trial("tensorrt", "fp16", capacity_rps=126.3, machine=gpu),
        ],
    )
    result = compare_studies([cpu_dir, gpu_dir], tmp_path / "compare")

    counts = _load_and_check(browser, result.html_path, "compare.png")

    assert counts["plots"] == counts["rendered"] == 5
    table = browser.find_element("id", "ranking").text
    assert "ml.g4dn.xlarge" in table and "ml.c5.xlarge" in table
