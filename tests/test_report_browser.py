"""The HTML reports in a real headless Chromium, served by ``calyx serve``'s server on 127.0.0.1.

Each page must load without console errors, request nothing but its own folder, give every
``<audio>`` element a source Chromium can decode, and start playback when a grid cell or an event
point is clicked. A screenshot of each page is kept in ``test-artifacts/`` and in ``tmp_path``.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calyx.core.audio import write_audio
from calyx.report import events_report, instrument_report, make_server
from calyx.report._server import ReportServer

selenium = pytest.importorskip("selenium")

from selenium import webdriver  # noqa: E402 - after the importorskip above
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (scripts/install-system-deps.sh installs them)",
)

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
PIANO = REPO / "tests" / "data" / "piano-excerpt"
WAIT_S = 20.0


# --------------------------------------------------------------------------------------------------
# Inputs, server, browser


def _synthetic_clip(sample_rate: int) -> np.ndarray:
    """2.5 s of struck harmonic tones: single notes and a two-note chord."""
    t = np.arange(int(2.5 * sample_rate)) / sample_rate
    y = np.zeros_like(t)
    for onset, midi in [(0.1, 57), (0.5, 64), (0.9, 60), (0.9, 67), (1.4, 52), (1.8, 72)]:
        f0 = 440.0 * 2.0 ** ((midi - 69) / 12.0)
        tt = t - onset
        on = tt >= 0
        for k in range(1, 12):
            y[on] += 0.1 / k * np.exp(-tt[on] * (2 + k)) * np.sin(2 * np.pi * k * f0 * tt[on])
    return y + 1e-4 * np.random.default_rng(0).standard_normal(y.size)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def events_page(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from calyx.events import EncoderSettings, encode, save

    work = tmp_path_factory.mktemp("events-input")
    sr = 22050
    y = _synthetic_clip(sr)
    write_audio(work / "clip.wav", y, sample_rate=sr)
    # the real encoder, without the (slow) gradient refinement
    save(encode(y, sample_rate=sr, settings=EncoderSettings(use_refinement=False)), work / "clip.cxe")
    return events_report(work / "clip.wav", work / "clip.cxe", out_dir=site / "events", residual_steps=8)


@pytest.fixture(scope="module")
def instrument_page(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from calyx.hypercube import EncodeOptions, encode_library
    from calyx.io import load_library

    work = tmp_path_factory.mktemp("instrument-input")
    # the six committed piano notes, encoded by the real encoder
    inst = encode_library(load_library(PIANO), options=EncodeOptions(method="tucker"), workers=1)
    inst.save(work / "piano.calyx")
    return instrument_report(work / "piano.calyx", source=PIANO, out_dir=site / "instrument", slider_note_s=1.0)


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[ReportServer]:
    srv = make_server(site, port=0, quiet=True)
    worker = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    worker.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        worker.join(timeout=5)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    drv.set_page_load_timeout(WAIT_S)
    try:
        yield drv
    finally:
        drv.quit()


# --------------------------------------------------------------------------------------------------
# Checks shared by the pages


def _open(drv: Any, url: str) -> None:
    drv.get_log("browser")  # drop what earlier pages logged
    drv.get_log("performance")
    drv.get(url)
    WebDriverWait(drv, WAIT_S).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _audio_states(drv: Any) -> list[dict[str, Any]]:
    states: list[dict[str, Any]] = drv.execute_script(
        "return Array.from(document.querySelectorAll('audio')).map(function (a) { return {id: a.id, "
        "src: a.currentSrc, ready: a.readyState, duration: isFinite(a.duration) ? a.duration : -1, "
        "error: a.error ? a.error.code : 0}; });"
    )
    return states


def _assert_audio_decodable(drv: Any) -> list[dict[str, Any]]:
    def ready(d: Any) -> bool:
        s = _audio_states(d)
        return bool(s) and all(a["ready"] >= 1 and a["duration"] > 0 for a in s)

    try:
        WebDriverWait(drv, WAIT_S, poll_frequency=0.2).until(ready)
    except Exception as exc:  # report which element failed, then fail
        raise AssertionError(f"audio elements not decodable: {_audio_states(drv)}") from exc
    states = _audio_states(drv)
    assert all(a["error"] == 0 for a in states), states
    return states


def _assert_clean(drv: Any, base_url: str) -> None:
    """No console errors, and no request anywhere but ``base_url`` (or inline data)."""
    errors = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    names: list[str] = drv.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; })"
        ".concat([location.href]);"
    )
    urls = list(names)
    for entry in drv.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    outside = [u for u in urls if not (u.startswith(base_url) or u.startswith("data:"))]
    assert not outside, outside
    assert len(urls) > 1


def _screenshot(drv: Any, name: str, tmp_path: Path) -> Path:
    drv.execute_script("window.scrollTo(0, 0);")
    height = int(drv.execute_script("return document.documentElement.scrollHeight"))
    drv.set_window_size(1280, min(max(height, 900), 7000))
    path = tmp_path / f"{name}.png"
    assert drv.save_screenshot(str(path))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(path, ARTIFACTS / f"report-{name}.png")
    drv.set_window_size(1280, 900)
    assert path.stat().st_size > 10_000
    return path


def _wait_playing(drv: Any, element_id: str, src_suffix: str) -> None:
    script = (f"var p = document.getElementById({json.dumps(element_id)}); "
              "return [p.paused, p.currentTime, p.currentSrc];")

    def playing(d: Any) -> bool:
        paused, current, src = d.execute_script(script)
        return (not paused) and current > 0.05 and str(src).endswith(src_suffix)

    try:
        WebDriverWait(drv, WAIT_S, poll_frequency=0.05).until(playing)
    except Exception as exc:
        raise AssertionError(f"{element_id} did not play {src_suffix}: {drv.execute_script(script)}") from exc


# --------------------------------------------------------------------------------------------------
# The pages


def test_events_page_in_chromium(driver: Any, server: ReportServer, events_page: Path, tmp_path: Path) -> None:
    base = server.url
    _open(driver, base + "events/")
    states = _assert_audio_decodable(driver)
    assert {"original", "reconstruction", "event-player", "edit-random-vectors", "edit-random-times",
            "edit-perturbed"} <= {a["id"] for a in states}

    points = driver.find_elements(By.CSS_SELECTOR, "svg#event-map circle.ev[data-src]")
    assert len(points) >= 3
    target = points[len(points) // 2]
    src = target.get_attribute("data-src")
    target.click()
    _wait_playing(driver, "event-player", src)
    assert "playing" in (target.get_attribute("class") or "")

    # the stepper walks through the pursuit's residuals
    img = driver.find_element(By.ID, "residual-img")
    last = img.get_attribute("src")
    driver.find_element(By.ID, "step-prev").click()
    assert img.get_attribute("src") != last
    assert "step" in driver.find_element(By.ID, "residual-caption").text

    _assert_clean(driver, base)
    _screenshot(driver, "events", tmp_path)


def test_instrument_page_in_chromium(
    driver: Any, server: ReportServer, instrument_page: Path, tmp_path: Path
) -> None:
    base = server.url
    _open(driver, base + "instrument/")
    states = _assert_audio_decodable(driver)
    assert {"player", "pitch-slider-glide", "dynamic-slider-glide"} <= {a["id"] for a in states}

    # six grid notes, each with its decoded and original version
    decoded = driver.find_elements(By.CSS_SELECTOR, "table.grid button.decoded")
    originals = driver.find_elements(By.CSS_SELECTOR, "table.grid button.original")
    assert len(decoded) == 6 and len(originals) == 6
    spectrogram = driver.find_element(By.ID, "note-spectrogram")
    cell = decoded[-1]
    cell.click()
    _wait_playing(driver, "player", cell.get_attribute("data-src"))
    note = int(cell.get_attribute("data-note"))
    assert spectrogram.get_attribute("src").endswith(f"img/n{note:04d}-spectrogram.png")
    originals[0].click()
    _wait_playing(driver, "player", originals[0].get_attribute("data-src"))

    # a step of the pitch slider plays a note between the grid points
    slider = driver.find_element(By.ID, "pitch-slider")
    slider.send_keys(Keys.ARROW_RIGHT)
    _wait_playing(driver, "player", "between/pitch-001.wav")
    assert "60.30" in driver.find_element(By.ID, "pitch-slider-value").text

    _assert_clean(driver, base)
    _screenshot(driver, "instrument", tmp_path)


def test_pages_work_opened_as_files(driver: Any, events_page: Path, instrument_page: Path) -> None:
    for folder in (events_page, instrument_page):
        _open(driver, (folder / "index.html").as_uri())
        _assert_audio_decodable(driver)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, (folder.name, errors)
