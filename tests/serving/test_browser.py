"""End-to-end: the web page in a real headless Chromium, against `vocalis serve` in a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import soundfile as sf

from support.serving import CLASSES, SR, free_port, start_server, tone

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (apt-get install chromium)")
def test_upload_shows_species_on_the_page(v1: str, artifact_dir: Path, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    audio = tmp_path / "whale call.wav"
    sf.write(audio, tone(3.5, freq=700.0), SR, subtype="PCM_16")
    port = free_port()
    server = start_server(artifact_dir, f"sqlite:///{tmp_path / 'log.db'}", port, tmp_path / "server.log")
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 1300})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"http://127.0.0.1:{port}/")
            # the model card is fetched and shown
            page.wait_for_function("document.querySelector('#model-card dd') !== null", timeout=10_000)
            assert v1 in page.inner_text("#model-badge")

            page.set_input_files("#file-input", str(audio))
            page.wait_for_selector("#top-label", timeout=15_000)
            top = page.inner_text("#top-label")
            assert top in CLASSES
            # one timeline segment per 1 s window (3.5 s -> 4 windows), and the top-species bars
            assert page.locator("#timeline .segment").count() == 4
            assert page.locator("#top-species li").count() == len(CLASSES)
            assert "Done in" in page.inner_text("#status")
            shot = Path(os.environ.get("VOCALIS_SCREENSHOT", tmp_path / "page.png"))
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000

            # a file that is not audio: the page says why instead of failing silently
            junk = tmp_path / "notes.wav"
            junk.write_text("field notes, not audio\n" * 50)
            page.set_input_files("#file-input", str(junk))
            page.wait_for_selector("#status.error", timeout=10_000)
            assert "unsupported_media" in page.inner_text("#status")
            assert errors == [], errors
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
