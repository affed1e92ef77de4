"""The explorer in a real browser: headless Chromium from the OS packages (`make test-browser` installs it), driven
by Selenium: open the page, move a slider, see the image change, take a screenshot.

VAE_LAB_EXPLORE_CKPT=RUN/checkpoints/last.ckpt (or A,B: side by side) shows that instead of an untrained model, and
VAE_LAB_EXPLORE_SCREENSHOT=FILE.png keeps the screenshot there (docs/img/explore.png is made so).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.explorer_helpers import tiny_checkpoint
from tests.test_explore import free_port

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1280,960"]

pytestmark = pytest.mark.skipif(not (os.access(CHROMIUM, os.X_OK) and os.access(DRIVER, os.X_OK)),
                                reason=f"no Chromium ({CHROMIUM}, {DRIVER}): `make test-browser` installs it")


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, data_dir):
    """The explorer served on a free port of 127.0.0.1."""
    pytest.importorskip("gradio", reason="the `explore` extra is not installed")
    from vae_lab.explorer import page
    from vae_lab.explorer.runs import candidates
    from vae_lab.explorer.session import Catalogue

    given = [p for p in os.environ.get("VAE_LAB_EXPLORE_CKPT", "").split(",") if p]
    paths = given or [str(tiny_checkpoint(tmp_path_factory.mktemp("browser"), "model=vae", "model.latent_dim=6"))]
    demo = page.build(Catalogue(candidates(paths, None), kl_images=2000))
    yield page.launch(demo, "127.0.0.1", free_port())
    demo.close()


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium with a fresh profile, logging every request it makes."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the `browser` extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


def image_source(driver) -> str | None:
    """The src of the large image A (None until the page has drawn it)."""
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, "#image-a img")
    return found[0].get_attribute("src") if found else None


def wait_for(condition, seconds: float = 120.0):
    """Poll until condition() is truthy; its value."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds:.0f} s")


def test_moving_a_slider_redraws_the_image(page_url, browser, tmp_path):
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(page_url)
    before = wait_for(lambda: image_source(browser))
    slider = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#slider-0 input[type=range]"))[0]
    slider.send_keys(Keys.END)  # latent 0 (the largest KL) to +3: the page's own input event
    start = time.perf_counter()
    after = wait_for(lambda: (src := image_source(browser)) != before and src)
    print(f"browser: slider move to new image {1000 * (time.perf_counter() - start):.0f} ms (machine load "
          f"{os.getloadavg()[0]:.1f})")
    assert after != before and slider.get_attribute("value") == "3"
    time.sleep(1.0)  # the traversal strip follows the image
    shot = Path(os.environ.get("VAE_LAB_EXPLORE_SCREENSHOT") or tmp_path / "explore.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(tmp_path / "full.png"))
    shrink(tmp_path / "full.png", shot)
    hosts = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = urlparse(message["params"]["request"]["url"])
            if url.scheme in ("http", "https", "ws", "wss"):  # not data:, blob: or the browser's own chrome:
                hosts.add(url.hostname)
    assert hosts == {"127.0.0.1"}, f"the page reached beyond this machine: {hosts}"


def shrink(source: Path, target: Path) -> None:
    """The screenshot as a small palette PNG (for the docs: well under 150 KB)."""
    from PIL import Image

    image = Image.open(source).convert("RGB")
    image.quantize(colors=64).save(target, optimize=True)
    if not target.exists():
        shutil.copy(source, target)
