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

import pytest

from benchmarks.browser import chromium, chromium_missing, free_port, hosts
from benchmarks.libraries import compare, table
from tests.explorer_helpers import tiny_checkpoint
from vae_lab.explorer.runs import candidates
from vae_lab.explorer.session import Catalogue

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, data_dir):
    """The explorer served on a free port of 127.0.0.1."""
    pytest.importorskip("gradio", reason="the `explore` extra is not installed")
    from vae_lab.explorer import page

    demo = page.build(shelf(tmp_path_factory))
    yield page.launch(demo, "127.0.0.1", free_port())
    demo.close()


def shelf(tmp_path_factory) -> Catalogue:
    """The checkpoints of VAE_LAB_EXPLORE_CKPT, or else an untrained VAE with 6 latents."""
    given = [p for p in os.environ.get("VAE_LAB_EXPLORE_CKPT", "").split(",") if p]
    paths = given or [str(tiny_checkpoint(tmp_path_factory.mktemp("browser"), "model=vae", "model.latent_dim=6"))]
    return Catalogue(candidates(paths, None), kl_images=2000)


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium with a fresh profile, logging every request it makes."""
    with chromium(str(tmp_path / "profile")) as driver:
        yield driver


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
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(page_url)
    before = wait_for(lambda: image_source(browser))
    slider = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#slider-0 input[type=range]"))[0]
    slider.send_keys(Keys.END)  # latent 0 (the largest KL) to +3: the page's own input event
    after = wait_for(lambda: (src := image_source(browser)) != before and src)
    assert after != before and slider.get_attribute("value") == "3"
    time.sleep(1.0)  # the traversal strip follows the image
    shot = Path(os.environ.get("VAE_LAB_EXPLORE_SCREENSHOT") or tmp_path / "explore.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(tmp_path / "full.png"))
    shrink(tmp_path / "full.png", shot)
    assert browser.execute_script("return localStorage.length") == 0  # no run history kept (it slows each move)
    assert hosts(browser) == {"127.0.0.1"}, f"the page reached beyond this machine: {hosts(browser)}"


def test_gradio_and_panel_core_pages_redraw_from_this_machine_only(tmp_path_factory, tmp_path, data_dir):
    pytest.importorskip("panel", reason="the `panel` extra is not installed")
    catalogue = shelf(tmp_path_factory)
    results = compare(catalogue, catalogue.names[0], moves=2, profile=str(tmp_path))
    print(table(results))
    assert list(results) == ["Gradio", "Panel", "Gradio, the whole explorer"]
    for name, result in results.items():
        assert len(result["ms"]) == 2 and (result["ms"] > 0).all() and result["lines"] > 10, name
        assert result["hosts"] == {"127.0.0.1"}, f"{name} reached beyond this machine: {result['hosts']}"


def shrink(source: Path, target: Path) -> None:
    """The screenshot as a small palette PNG (for the docs: well under 150 KB)."""
    from PIL import Image

    image = Image.open(source).convert("RGB")
    image.quantize(colors=64).save(target, optimize=True)
    if not target.exists():
        shutil.copy(source, target)
