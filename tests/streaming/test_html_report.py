"""`mediapulse report` as a user runs it: a simulated pipeline run, the report written from its warehouse and
health metrics, then opened in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium with the driver's path given, so nothing is downloaded). Screenshots of a laptop and a
phone viewport are saved under ``test-artifacts/`` (their paths are printed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streaming.cli import main
from streaming.run import run_pipeline
from tests import oracle
from tests.pipeline import make_scenario, pipeline_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHARTS = (
    "traffic", "ranking", "trending", "viewers", "mix-play_rate", "mix-completion_rate",
    "health-records", "health-reasons", "health-late", "health-freshness",
)  # fmt: skip


def config_args(root: Path) -> list[str]:
    return [
        "--set", f"warehouse.url=duckdb:///{root / 'warehouse.duckdb'}",
        "--set", f"metrics.path={root / 'metrics.jsonl'}",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def simulated_run(spark: Any, tmp_path_factory: Any) -> tuple[Path, oracle.Expected]:
    """A small run of the real pipeline, one file per batch so the health metrics have several batches."""
    root = tmp_path_factory.mktemp("report")
    scenario = make_scenario(root, events=6000, files=4, contents=30, affiliates=3, users=1500, seed=21)
    cfg = pipeline_config(root, "source.max_files_per_trigger=1")
    scenario.release()
    run_pipeline(spark, cfg, available_now=True)
    return root, oracle.expected(scenario.incoming_files(), scenario.now)


@pytest.fixture(scope="module")
def report(simulated_run: tuple[Path, oracle.Expected], tmp_path_factory: Any) -> tuple[Path, Path]:
    """The report of the whole run (as `make run` writes it: no range given), and its PNG folder."""
    root, _ = simulated_run
    out = tmp_path_factory.mktemp("out") / "report.html"
    png = out.parent / "png"
    assert main(["report", *config_args(root), "--out", str(out), "--png", str(png)]) == 0
    return out, png


def _specs(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="mediapulse-specs">(.*?)</script>', html, re.S)
    assert found, "the report carries its chart specs"
    return json.loads(found.group(1))


def test_the_report_is_one_file_that_fetches_nothing(report: tuple[Path, Path]) -> None:
    html = report[0].read_text()
    markup = re.sub(r"(<script[^>]*>).*?</script>", r"\1</script>", html, flags=re.S)  # tags, not code

    assert re.search(r"<(script|link|img|iframe|object|embed)[^>]+(src|href|data)=", markup) is None
    assert "@import" not in markup and "url(" not in markup
    assert set(_specs(html)) == set(CHARTS)


def test_traffic_by_platform_equals_the_ground_truth(
    simulated_run: tuple[Path, oracle.Expected], report: tuple[Path, Path]
) -> None:
    _, truth = simulated_run
    expected: dict[tuple[datetime, str], int] = defaultdict(int)
    for (window, _content, _affiliate, _placement, platform), metrics in truth.aggregates.items():
        expected[(window.astimezone(UTC), platform)] += metrics["impressions"]
    rows = _specs(report[0].read_text())["traffic"]["data"]["values"]  # the lines' and the points'

    drawn = {
        (datetime.fromisoformat(v["window_start"].replace("Z", "+00:00")), v["platform"]): v["impressions"]
        for v in rows
    }
    assert drawn == dict(expected)


def test_png_writes_one_image_per_chart(report: tuple[Path, Path]) -> None:
    images = sorted(report[1].glob("*.png"))

    assert [p.stem for p in images] == sorted(CHARTS)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in images)


@pytest.fixture(scope="module")
def browser() -> Any:
    """Headless Chromium through its Debian chromedriver (Selenium Manager is never asked for a driver)."""
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are missing: .ci/run installs them")
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver

    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--hide-scrollbars", "--window-size=1280,900"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver: Any, page: Path, width: int) -> None:
    driver.set_window_size(width, 900)
    driver.get(page.as_uri())
    deadline = time.monotonic() + 60
    while driver.execute_script("return document.body.dataset.charts || ''") == "":
        assert time.monotonic() < deadline, "the charts did not finish drawing within 60 s"
        time.sleep(0.1)


def _screenshot(driver: Any, name: str) -> Path:
    """A full-page screenshot into test-artifacts/ (the window is stretched to the page's height)."""
    width = driver.execute_script("return window.innerWidth")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, height + 100)
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    driver.save_screenshot(str(target))
    print(f"screenshot: {target}")
    return target


DRAWN_MARKS = """
return Array.from(document.querySelectorAll('.chart')).map(chart => {
  const svg = chart.querySelector('svg');
  const items = ['path', 'line', 'text'].map(tag => `g[class^="mark-"] > ${tag}`).join(', ');
  const marks = svg ? svg.querySelectorAll(items).length : 0;
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return [chart.id, marks, Math.round(box.width), Math.round(box.height)];
});
"""


def test_every_chart_draws_in_chromium_without_console_errors(
    browser: Any, report: tuple[Path, Path]
) -> None:
    _open(browser, report[0], 1280)

    assert browser.execute_script("return document.body.dataset.charts") == "drawn"
    drawn = {
        chart: (marks, width, height) for chart, marks, width, height in browser.execute_script(DRAWN_MARKS)
    }
    assert set(drawn) == set(CHARTS)
    assert {c: d for c, d in drawn.items() if d[0] == 0 or d[1] < 200 or d[2] < 100} == {}
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'))"
    )
    assert fetched == []
    assert _screenshot(browser, "report-laptop.png").stat().st_size > 50_000


def test_on_a_phone_the_page_fits_the_screen_and_every_chart_draws(
    browser: Any, report: tuple[Path, Path]
) -> None:
    _open(browser, report[0], 390)

    assert browser.execute_script("return document.body.dataset.charts") == "drawn"
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    widths = {chart: width for chart, _, width, _ in browser.execute_script(DRAWN_MARKS)}
    assert all(150 < width <= 390 for width in widths.values()), widths
    _screenshot(browser, "report-phone.png")


# ------------------------------------------------------------------------------------------ CLI errors


@pytest.fixture
def no_jvm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the command builds a SparkSession: the report never needs Spark."""

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the command started Spark")

    monkeypatch.setattr("streaming.session.build_session", refuse)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "soon"], "argument --since: not a duration"),
        (["--since", "0h"], "argument --since: must be longer than 0"),
        (["--since", "6h", "--from", "2026-11-01"], "give --since or --from, not both"),
        (["--from", "2026-11-02", "--to", "2026-11-01"], "must be after --from"),
        (["--from", "2026-11-01T00:00:00"], "has no time zone"),
    ],
)
def test_bad_ranges_end_with_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: Any, no_jvm: None
) -> None:
    assert exit_code(["report", "--out", str(tmp_path / "r.html"), *argv]) == 2

    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("mediapulse report: error: ")
    assert message in err.splitlines()[-1]
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def exit_code(argv: list[str]) -> int:
    """The exit code of ``mediapulse argv``, whether argparse exits or the command returns."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def test_an_out_path_that_is_a_folder_is_refused(tmp_path: Path, capsys: Any, no_jvm: None) -> None:
    assert main(["report", "--out", str(tmp_path)]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mediapulse report: error: --out {tmp_path} is a folder: name a file in it"]


def test_an_out_path_below_a_file_is_refused(tmp_path: Path, capsys: Any, no_jvm: None) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")

    assert main(["report", "--out", str(blocker / "report.html")]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"mediapulse report: error: --out {blocker / 'report.html'}: cannot create")


def test_a_missing_warehouse_is_one_line_and_exit_2_and_writes_nothing(
    tmp_path: Path, caplog: Any, no_jvm: None
) -> None:
    warehouse = tmp_path / "data" / "warehouse.duckdb"
    out = tmp_path / "out" / "report.html"

    code = main(["report", "--set", f"warehouse.url=duckdb:///{warehouse}", "--out", str(out)])

    assert code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert str(warehouse) in errors[0] and "mediapulse run" in errors[0]
    assert not out.exists()
    assert not warehouse.parent.exists()
