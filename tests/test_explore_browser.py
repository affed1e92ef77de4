"""The explorer in a real browser: headless Chromium from the OS packages (`make test-browser` installs it), driven
by Selenium at 1400 × 1000: open the page, move a slider, see the image change, take a screenshot; and a designer's
walk-through (pick a garment, change one thing, start from a real one, blend two, download) with the strip, sliders
and image kept on one design at every step.

VAE_LAB_EXPLORE_CKPT=RUN/checkpoints/last.ckpt (or A,B: side by side) shows that instead of an untrained model,
VAE_LAB_EXPLORE_SCREENSHOT=FILE.png keeps the slider test's screenshot there (docs/img/explore.png is made so) and
VAE_LAB_EXPLORE_WALK=FOLDER the walk-through's, one per step (docs/img/explore_walk_*.png).
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
    """The checkpoints of VAE_LAB_EXPLORE_CKPT, or else an untrained Fashion-MNIST CVAE (the default: 8 latents, a
    learned mixture prior)."""
    given = [p for p in os.environ.get("VAE_LAB_EXPLORE_CKPT", "").split(",") if p]
    paths = given or [str(tiny_checkpoint(tmp_path_factory.mktemp("browser"), "model=cvae", "data=fashion_mnist"))]
    return Catalogue(candidates(paths, None), kl_images=2000)


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium at 1400 × 1000 with a fresh profile, logging every request it makes."""
    with chromium(str(tmp_path / "profile")) as driver:
        driver.set_window_size(1400, 1000)
        yield driver


def image_source(driver, element: str = "image-a") -> str | None:
    """The src of a picture of the page (None until the page has drawn it): the large image A by default."""
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, f"#{element} img")
    return found[0].get_attribute("src") if found else None


def redrawn(driver, before: dict[str, str | None]) -> dict[str, str]:
    """Wait until every picture in `before` shows a new image; their new sources."""
    return {name: wait_for(lambda n=name: (src := image_source(driver, n)) != before[n] and src)
            for name in before}


def pictures(driver, *names: str) -> dict[str, str | None]:
    return {name: image_source(driver, name) for name in names}


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
    slider.send_keys(Keys.END)  # latent 0 (the largest KL) to its top: the page's own input event
    after = wait_for(lambda: (src := image_source(browser)) != before and src)
    assert after != before and slider.get_attribute("value") == slider.get_attribute("max")  # its range's top
    time.sleep(1.0)  # the traversal strip follows the image
    shot = Path(os.environ.get("VAE_LAB_EXPLORE_SCREENSHOT") or tmp_path / "explore.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(tmp_path / "full.png"))
    shrink(tmp_path / "full.png", shot)
    assert browser.execute_script("return localStorage.length") == 0  # no run history kept (it slows each move)
    assert hosts(browser) == {"127.0.0.1"}, f"the page reached beyond this machine: {hosts(browser)}"


def test_a_designers_walk_through_keeps_the_page_on_one_design(page_url, browser, tmp_path):
    """Pick a garment, change one thing, try a random one, start from a real one, blend two, download: each step
    redraws the image and the strip together; the controls it needs are above the fold at 1400 × 1000."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    folder = Path(os.environ.get("VAE_LAB_EXPLORE_WALK") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)

    def step(name: str) -> None:
        time.sleep(0.5)
        assert browser.save_screenshot(str(tmp_path / "full.png"))
        shrink(tmp_path / "full.png", folder / f"explore_walk_{name}.png")

    def click(element: str) -> None:
        browser.find_element(By.ID, element).click()

    browser.get(page_url)
    wait_for(lambda: image_source(browser) and image_source(browser, "strip"))
    assert "How to read this page" in browser.find_element(By.ID, "how-to-read").text
    for element in ("class", "draw", "encode", "blend"):  # reachable without scrolling
        assert browser.execute_script("return arguments[0].getBoundingClientRect().bottom <= window.innerHeight",
                                      browser.find_element(By.ID, element)), element
    step("1_open")
    before = pictures(browser, "image-a", "strip")
    field = browser.find_element(By.CSS_SELECTOR, "#class input")
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys("Sneaker", Keys.ENTER)
    redrawn(browser, before)  # a new class: the image and the strip (no stale strip)
    step("2_class")
    before = pictures(browser, "image-a", "strip")
    browser.find_element(By.CSS_SELECTOR, "#slider-1 input[type=range]").send_keys(Keys.END)
    redrawn(browser, before)  # the image, and the strip now of the slider moved
    step("3_slider")
    before = pictures(browser, "image-a", "strip")
    click("draw")
    redrawn(browser, before)
    before = pictures(browser, "image-a", "strip")
    click("encode")
    wait_for(lambda: image_source(browser, "original"))
    redrawn(browser, before)
    step("4_test_image")
    before = pictures(browser, "image-a", "strip")
    click("blend")
    redrawn(browser, before)
    assert "The strip: the start image" in browser.find_element(By.ID, "strip-note").text
    step("5_blend")
    click("download")
    wait_for(lambda: "z.json" in browser.find_element(By.ID, "files").get_attribute("innerHTML"), 30)
    assert not browser.find_elements(By.CSS_SELECTOR, ".error")  # no control marked with an error
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
