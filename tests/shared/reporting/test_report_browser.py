"""Open the rendered reports in headless Chromium: key elements visible, nothing fetched, nothing overflows.

Screenshots go to ``tests/artifacts/reports/`` (git-ignored) for people to look at.
"""

import shutil
import tempfile
from pathlib import Path

import pytest

from shared.reporting.publish import render_evaluation_files, render_index_files, render_report_files
from shared.reporting.schema import DatasetIndex, EvaluationReport, RunReport

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
ARTIFACTS = HERE.parents[1] / "artifacts" / "reports"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists(),
                       reason="headless Chromium not installed (make browser: Debian chromium + chromium-driver)"),
]


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (requirements-dev.txt)")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="vt-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1280,900",
                     f"--user-data-dir={profile}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _write(name: str, html: bytes) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(html)
    return path


def _open(driver, path: Path, width: int = 1280) -> None:
    driver.set_window_size(width, 900)
    driver.get(path.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"


def _screenshot(driver, path: Path, width: int) -> Path:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(height, 12000))
    shot = path.with_name(f"{path.stem}.{width}px.png")
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000
    return shot


def _common_checks(driver) -> None:
    # Nothing was fetched: the only resource is the document itself.
    fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched == []
    # Nothing wider than the window (a horizontal scrollbar means a table or chart overflows).
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    verdict = driver.find_element("id", "verdict")
    assert verdict.is_displayed() and verdict.size["height"] > 60
    # Every chart is drawn, has a real size, and its text is large enough to read.
    for chart in driver.find_elements("css selector", "svg.chart"):
        box = chart.rect
        assert box["width"] > 250 and box["height"] > 100, box
        smallest = driver.execute_script(
            "const t=[...arguments[0].querySelectorAll('text')].map(e=>e.getBoundingClientRect().height).filter(h=>h>0);"
            "return t.length ? Math.min(...t) : 99;", chart)
        assert smallest >= 8, f"chart text only {smallest:.1f} px high"


RUNS = ["run_2_classes", "run_10_classes", "run_120_classes", "run_rejected", "run_failed", "run_over_budget"]


@pytest.mark.parametrize("name", RUNS)
def test_run_report_in_chromium(browser, name):
    report = RunReport.model_validate_json((FIXTURES / f"{name}.json").read_text())
    path = _write(f"{name}.html", render_report_files(report)["report.html"])
    _open(browser, path)
    _common_checks(browser)
    verdict = browser.find_element("id", "verdict")
    assert verdict.get_attribute("data-outcome") == report.outcome
    title = {"promoted": "Promoted", "rejected": "Rejected", "failed": "Failed", "over_budget": "over budget"}
    assert title[report.outcome] in verdict.text

    if report.decision is not None:
        reason = browser.find_element("id", "decision-reason")
        assert reason.is_displayed() and report.decision.reason.split(": ", 1)[1][:40].lower() in reason.text.lower()
        table = browser.find_element("css selector", "#comparison table")
        assert table.is_displayed() and "Accuracy" in table.text and "Latency p95" in table.text
        for chart in ("per-class-f1", "confusion", "training"):
            figure = browser.find_element("css selector", f'figure[data-chart="{chart}"] svg')
            assert figure.is_displayed(), chart
        # The full per-class table opens and lists every class.
        details = browser.find_element("css selector", "#classes details")
        if details.get_attribute("open") is None:
            details.find_element("tag name", "summary").click()
        rows = details.find_elements("css selector", "tbody tr")
        assert len(rows) == len(report.candidate.metrics.per_class)
    if report.outcome == "failed":
        stage = browser.find_element("id", "failure-stage")
        message = browser.find_element("id", "failure-message")
        assert stage.is_displayed() and stage.text == report.failure.stage
        assert message.is_displayed() and "at least 10 are required" in message.text
    if report.outcome == "over_budget":
        budget = browser.find_element("id", "budget")
        assert budget.is_displayed() and "61,200,000" in budget.text and "50,000,000" in budget.text

    _screenshot(browser, path, 1280)
    if name in ("run_120_classes", "run_failed"):  # a phone-width look at the densest and the simplest page
        _open(browser, path, 420)
        assert browser.find_element("id", "verdict").is_displayed()
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        _screenshot(browser, path, 420)


def test_evaluation_and_index_in_chromium(browser):
    evaluation = EvaluationReport.model_validate_json((FIXTURES / "evaluation_regression.json").read_text())
    html = next(v for k, v in render_evaluation_files(evaluation).items() if k.endswith(".html"))
    path = _write("evaluation_regression.html", html)
    _open(browser, path)
    _common_checks(browser)
    assert "Regression" in browser.find_element("id", "verdict").text
    _screenshot(browser, path, 1280)

    index = DatasetIndex.model_validate_json((FIXTURES / "index.json").read_text())
    path = _write("index.html", render_index_files(index)["index.html"])
    _open(browser, path)
    _common_checks(browser)
    assert browser.find_element("css selector", 'figure[data-chart="history"] svg').is_displayed()
    assert "v014c2d9e8" in browser.find_element("id", "verdict").text
    assert len(browser.find_elements("css selector", "#versions tbody tr")) == len(index.runs)
    _screenshot(browser, path, 1280)
