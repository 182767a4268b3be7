"""A real browser for the tests: headless Chromium from the system packages (Debian's `chromium` and
`chromium-driver`, which `.ci/run` installs), driven by selenium with the system's chromedriver. Nothing is
downloaded: selenium is handed both binaries, and Chromium is started with its background networking off (this
machine's network is closed) and a fresh profile each time."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = os.environ.get("REVERIE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("REVERIE_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=en-US",
]
WINDOW = (1280, 860)


def missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return (f"no {name} at {path}: install Debian's chromium and chromium-driver "
                    "(`apt-get install chromium chromium-driver`; .ci/run does) to run the browser tests")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (`make setup` installs requirements-dev.txt)"
    return None


@contextmanager
def chromium(window: tuple[int, int] = WINDOW) -> Iterator:
    """A selenium WebDriver on a headless Chromium with a fresh profile, quit and wiped afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="reverie-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=subprocess.DEVNULL)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot_dir() -> Path | None:
    """Where the browser tests save their screenshots: REVERIE_SCREENSHOTS (`make screenshots` sets docs/),
    else nowhere."""
    where = os.environ.get("REVERIE_SCREENSHOTS")
    if not where:
        return None
    path = Path(where)
    path.mkdir(parents=True, exist_ok=True)
    return path
