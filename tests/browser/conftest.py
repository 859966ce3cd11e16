"""Browser tests of the web admin (issue 8): Debian's chromium driven by
selenium against the real `postamt serve`. Skipped, with the reason, when
chromium, chromedriver or selenium is missing. Screenshots of every page go
to $POSTAMT_SCREENSHOTS (default: a temporary folder, printed)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from support import Postamt, find_binary  # noqa: E402


def _chromium() -> tuple[str | None, str | None]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return browser, driver


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    d = Path(os.environ.get("POSTAMT_SCREENSHOTS") or tempfile.mkdtemp(prefix="postamt-screens-"))
    d.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots in {d}")
    return d


@pytest.fixture(scope="session")
def postamt_bin() -> Path:
    path = find_binary()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"postamt binary not found at {path}: build it first (`cargo build -p postamt`)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def web_server(postamt_bin, tmp_path_factory):
    srv = Postamt(
        postamt_bin,
        tmp_path_factory.mktemp("postamt"),
        {"listen": {"admin": ["127.0.0.1:0"], "smtp": ["127.0.0.1:0"], "pop3": ["127.0.0.1:0"]}},
    )
    srv.config_path.write_text("# Browser test config: keep this comment.\n" + srv.config_path.read_text())
    srv.start()
    try:
        yield srv
        srv.stop()
    finally:
        srv.kill9()


@pytest.fixture
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    binary, driver = _chromium()
    if not binary or not driver:
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1366,900", "--disable-gpu"]:
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(driver), options=opts)
    d.set_page_load_timeout(30)
    try:
        yield d
    finally:
        d.quit()
