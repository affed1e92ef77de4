"""Headless Chromium from the OS packages (Debian's chromium and chromium-driver), driven by Selenium: for the
explorer's browser test (tests/test_explore_browser.py) and the library comparison (benchmarks/libraries.py)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # Debian's chromium and chromium-driver
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1280,960"]


def chromium_missing() -> str | None:
    """Why headless Chromium cannot run here (None when it can)."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(DRIVER, os.X_OK)):
        return f"no Chromium ({CHROMIUM}, {DRIVER}): `make test-browser` installs it"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the `browser` extra: `make test-browser` installs it)"
    return None


@contextmanager
def chromium(profile: str) -> Iterator[Any]:
    """Headless Chromium (Selenium) with a fresh profile in `profile`, logging every request it makes."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hosts(driver: Any) -> set[str]:
    """The hosts of every http(s)/ws(s) request the browser made (its performance log)."""
    out = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            address = urlparse(message["params"]["request"]["url"])
            if address.scheme in ("http", "https", "ws", "wss"):
                out.add(address.hostname)
    return out
