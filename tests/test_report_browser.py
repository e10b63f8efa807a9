"""End-to-end test of the HTML report in a real browser: Debian's Chromium, headless, offline.

Two tiny synthetic videos (H.264 4:4:4 at an odd width, so the report re-encodes them) and
detections made from their ground truth; the report is opened from file://, a detection is
clicked and the score slider moved, and a screenshot is kept (also copied to
$SCNN_TEST_ARTIFACTS when set). .ci/run installs chromium and chromium-driver.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from scnn.html_report import write_html_report
from scnn.records import Detection
from scnn.synth import SynthConfig, generate

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); "
        "`apt-get install chromium chromium-driver` (.ci/run does)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--window-size=1280,1000",
)
HIGH_SCORE, LOW_SCORE, FALSE_SCORE = 0.9, 0.35, 0.2
SLIDER_STEPS = 50  # arrow presses on the 0..1 slider with step 0.01: minimum score 0.50
WAIT_S = 300.0  # a guard against hanging on a busy machine; each wait takes a moment


def _wait(driver, script: str, what: str):
    """Poll a JS expression until it is truthy; fail naming ``what`` after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script};")
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}: {script}")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    config = SynthConfig(
        num_classes=2,
        train_videos=0,
        val_videos=0,
        test_videos=2,
        duration_range_s=(12.0, 14.0),
        instance_duration_range_s=(1.0, 2.5),
        seed=0,  # first video: three instances of two classes
    )
    gt = generate(root / "data", config, quiet=True)
    detections = []
    for n, instance in enumerate(gt.instances):
        score = HIGH_SCORE if n % 2 == 0 else LOW_SCORE
        detections.append(
            Detection(instance.video, instance.start_s, instance.end_s, instance.label, score)
        )
        late_s = min(instance.end_s + 0.5, gt.durations_s[instance.video] - 0.5)
        detections.append(
            Detection(instance.video, late_s - 0.5, late_s, instance.label, FALSE_SCORE)
        )
    videos = {name: root / "data" / "videos" / f"{name}.mp4" for name in gt.videos}
    return write_html_report(root / "report", detections, gt=gt, videos=videos)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    browser = webdriver.Chrome(options=options, service=service)
    yield browser
    browser.quit()


def _keep_screenshot(driver, path: Path) -> None:
    driver.save_screenshot(str(path))
    artifacts = os.environ.get("SCNN_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / path.name)


def test_report_in_headless_chromium(report, driver, tmp_path):
    driver.get(report.as_uri())
    links = driver.find_elements(By.CSS_SELECTOR, "table a[href$='.html']")
    assert len(links) == 2
    assert "activitynet protocol" in driver.page_source
    assert driver.execute_script(
        "const img = document.querySelector('img'); return img.complete && img.naturalWidth > 0;"
    ), "the precision-recall picture did not load"
    _keep_screenshot(driver, tmp_path / "report_index.png")
    links[0].click()
    _wait(driver, "document.getElementById('player') !== null", "the video page")

    # The re-encoded video plays: metadata loaded, no media error, the right duration.
    _wait(driver, "document.getElementById('player').readyState >= 1", "video metadata")
    assert driver.execute_script("return document.getElementById('player').error") is None
    duration_s = float(driver.find_element(By.ID, "timeline").get_attribute("data-duration"))
    player_s = driver.execute_script("return document.getElementById('player').duration")
    assert player_s == pytest.approx(duration_s, abs=0.1)

    # Keyboard and screen readers: every segment is focusable and labelled.
    segments = driver.find_elements(By.CSS_SELECTOR, ".seg")
    assert segments
    for segment in segments:
        label = segment.get_attribute("aria-label")
        assert re.search(r"\w+, \d+\.\d\d s to \d+\.\d\d s", label), label
        assert int(segment.get_attribute("tabIndex")) >= 0
    detections = driver.find_elements(By.CSS_SELECTOR, ".seg.det")
    assert all(re.search(r", score \d\.\d{3}", d.get_attribute("aria-label")) for d in detections)

    # Clicking a detection seeks the video to its start and moves the cursor there.
    target = max(detections, key=lambda d: float(d.get_attribute("data-start")))
    start_s = float(target.get_attribute("data-start"))
    target.click()
    current_s = _wait(
        driver,
        f"Math.abs(document.getElementById('player').currentTime - {start_s}) < 0.05 "
        "&& document.getElementById('player').currentTime",
        "the seek",
    )
    assert current_s == pytest.approx(start_s, abs=0.05)
    cursor_fraction = driver.execute_script(
        "return getComputedStyle(document.getElementById('timeline')).getPropertyValue('--t')"
    )
    assert float(cursor_fraction) == pytest.approx(start_s / duration_s, abs=0.01)

    # Enter on a focused segment seeks too.
    first = min(detections, key=lambda d: float(d.get_attribute("data-start")))
    assert driver.execute_script(
        "arguments[0].focus(); return document.activeElement === arguments[0];", first
    )
    first.send_keys(Keys.ENTER)
    first_s = float(first.get_attribute("data-start"))
    _wait(
        driver,
        f"Math.abs(document.getElementById('player').currentTime - {first_s}) < 0.05",
        "the keyboard seek",
    )

    # The slider hides detections below its value.
    assert all(d.is_displayed() for d in detections)
    _keep_screenshot(driver, tmp_path / "report_video_page_all.png")
    driver.find_element(By.ID, "min-score").send_keys(Keys.ARROW_RIGHT * SLIDER_STEPS)
    assert driver.find_element(By.ID, "min-score-value").text == "0.50"
    for detection in detections:
        score = float(detection.get_attribute("data-score"))
        assert detection.is_displayed() == (score >= 0.5), detection.get_attribute("aria-label")
    shown = sum(float(d.get_attribute("data-score")) >= 0.5 for d in detections)
    assert shown < len(detections)
    assert driver.find_element(By.ID, "shown").text == (
        f"{shown} of {len(detections)} detections shown"
    )
    driver.execute_script("window.scrollTo(0, 0)")
    _keep_screenshot(driver, tmp_path / "report_video_page_min_score.png")
    assert (tmp_path / "report_video_page_min_score.png").read_bytes().startswith(b"\x89PNG")
