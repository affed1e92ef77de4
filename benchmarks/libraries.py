"""How the explorer's library was chosen: its core (a slider per latent, the image, the strip of the latent moved)
written in Gradio and in Panel, each served and timed in headless Chromium, key press to new image.

`python -m benchmarks.explorer ckpt_path=… libraries=N` runs it (docs/explore.md, "Why Gradio"). Both pages draw
through the same `Core`, so what differs is the library: its code (the lines of `gradio_page` and `panel_page`) and
its latency (the browser's key press to the new image loaded in the page).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np
import torch

from benchmarks.browser import chromium, free_port, hosts
from vae_lab.explorer.session import SPAN, Catalogue, Session

PIXELATED = "img { image-rendering: pixelated; }"


@dataclass
class Core:
    """What the core pages draw: slider values (in KL order) → the first model's image, or a latent's strip."""

    catalogue: Catalogue
    name: str
    threads: int = 1

    @property
    def session(self) -> Session:
        return self.catalogue.session(self.name)

    @property
    def labels(self) -> list[str]:
        """Each slider's label: its latent and KL."""
        return [f"z{d} · KL {self.session.first.kl[d]:.2f}" for d in self.session.order()]

    def code(self, values: list[float]) -> np.ndarray:
        """The code the sliders show."""
        torch.set_num_threads(self.threads)  # in the server's worker thread too
        z = np.zeros(self.session.size, np.float32)
        z[self.session.order()] = values
        return z

    def image(self, *values: float) -> np.ndarray:
        return self.session.decode(self.code(list(values)))[0]

    def strip(self, slot: int, *values: float) -> np.ndarray:
        return self.session.traversal(self.code(list(values)), self.session.order()[slot])


def gradio_page(core: Core) -> Any:
    """The core in Gradio: a Blocks app."""
    from vae_lab.explorer.page import gr  # imported there with analytics off

    zero = [0.0] * len(core.labels)
    with gr.Blocks(analytics_enabled=False) as demo:
        with gr.Row():
            with gr.Column():
                image = gr.Image(format="png", height=360, interactive=False, elem_id="image-a", buttons=[])
                strip = gr.Image(format="png", height=120, interactive=False, buttons=[])
            with gr.Column():
                sliders = [gr.Slider(-SPAN, SPAN, value=0.0, step=0.01, label=text) for text in core.labels]
        for slot, slider in enumerate(sliders):
            slider.input(core.image, sliders, image, trigger_mode="always_last", show_progress="hidden",
                         queue=False).then(partial(core.strip, slot), sliders, strip, show_progress="hidden",
                                           queue=False)
        demo.load(lambda: (core.image(*zero), core.strip(0, *zero)), None, [image, strip])
    return demo


def panel_page(core: Core) -> Any:
    """The core in Panel: a function that builds one browser session's layout."""
    import panel as pn
    from PIL import Image

    def png(array: np.ndarray) -> bytes:
        out = io.BytesIO()
        Image.fromarray(array).save(out, format="PNG")
        return out.getvalue()

    def layout() -> Any:
        sliders = [pn.widgets.FloatSlider(start=-SPAN, end=SPAN, step=0.01, value=0.0, label=text)
                   for text in core.labels]
        zero = [0.0] * len(sliders)
        image = pn.pane.PNG(png(core.image(*zero)), width=360, alt_text="image-a", stylesheets=[PIXELATED])
        strip = pn.pane.PNG(png(core.strip(0, *zero)), width=540, stylesheets=[PIXELATED])

        def moved(slot: int, _event: Any) -> None:
            values = [s.value for s in sliders]
            image.object = png(core.image(*values))
            strip.object = png(core.strip(slot, *values))

        for slot, slider in enumerate(sliders):
            slider.param.watch(partial(moved, slot), "value")
        return pn.Row(pn.Column(image, strip), pn.Column(*sliders))

    return layout


def lines_of_code(code: Callable | ModuleType) -> int:
    """Lines of a function's or module's source that are code: not blank, not a comment, not a docstring."""
    import ast
    import inspect
    import textwrap

    source = textwrap.dedent(inspect.getsource(code))
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(1 for number, line in enumerate(source.splitlines(), 1)
               if line.strip() and not line.strip().startswith("#") and number not in docstrings)


@contextmanager
def serve_blocks(demo: Any, port: int) -> Iterator[str]:
    """A Gradio app served on 127.0.0.1:port as the explorer serves its page (`page.launch`); its URL."""
    from vae_lab.explorer.page import launch

    try:
        yield launch(demo, "127.0.0.1", port)
    finally:
        demo.close()


def serve_gradio(core: Core, port: int) -> Any:
    """The Gradio core page, served."""
    return serve_blocks(gradio_page(core), port)


def serve_explorer(core: Core, port: int) -> Any:
    """The whole explorer page (`page.build`), served."""
    from vae_lab.explorer.page import build

    return serve_blocks(build(core.catalogue), port)


@contextmanager
def serve_panel(core: Core, port: int) -> Iterator[str]:
    """The Panel core page served on 127.0.0.1:port (Bokeh's server, its scripts from the package); its URL."""
    import logging

    import panel as pn

    for name in ("tornado.access", "bokeh"):  # not a line per request
        logging.getLogger(name).setLevel(logging.WARNING)
    server = pn.serve(panel_page(core), port=port, address="127.0.0.1", show=False, threaded=True,
                      verbose=False, title="vae_lab explorer (Panel)")
    try:
        yield wait_until_serving(f"http://127.0.0.1:{port}/")
    finally:
        server.stop()


def wait_until_serving(url: str, seconds: float = 60.0) -> str:
    """url, once the server there answers."""
    import httpx

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"nothing served at {url} after {seconds:.0f} s")


# In the page: the time of each key press, and when the image matched by the selector next has a new src, loaded.
DEEP = """
function deep(root, selector) {
  const found = root.querySelector(selector);
  if (found) return found;
  for (const el of root.querySelectorAll('*')) if (el.shadowRoot) { const f = deep(el.shadowRoot, selector); if (f) return f; }
  return null;
}
"""  # the first element matching selector, looked up through shadow roots (where Panel's widgets live)
WATCH = DEEP + """
const selector = arguments[0];
function roots(root, out) {
  out.push(root);
  for (const el of root.querySelectorAll('*')) { if (el.shadowRoot) roots(el.shadowRoot, out); }
  return out;
}
const w = window.__vae_lab = {pressed: null, shown: null, src: deep(document, selector).src};
window.addEventListener('keydown', e => { w.pressed = e.timeStamp; w.shown = null; }, true);
const check = () => {
  const img = deep(document, selector);
  if (!img || img.src === w.src || w.pressed === null || w.shown !== null) return;
  w.src = img.src;
  const done = () => { w.shown = performance.now(); };
  if (img.complete && img.naturalWidth) done(); else img.addEventListener('load', done, {once: true});
};
const observer = new MutationObserver(check);
for (const r of roots(document, [])) observer.observe(r, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
"""


def deep_element(driver: Any, selector: str, seconds: float = 120.0) -> Any:
    """The first element matching selector, through shadow roots, once the page has drawn it."""
    script = DEEP + "return deep(document, arguments[0]);"
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        found = driver.execute_script(script, selector)
        if found is not None:
            return found
        time.sleep(0.05)
    raise TimeoutError(f"the page never showed {selector!r}")


def key_to_image(driver: Any, url: str, image: str, handle: str, moves: int, warmup: int = 3) -> np.ndarray:
    """Open url, then press End and Home in turn on the first slider's `handle` (latent 0 to +3, −3): the ms from
    each key press to the image `image` loaded with a new picture."""
    from selenium.webdriver.common.keys import Keys

    driver.get(url)
    deep_element(driver, image)
    slider = deep_element(driver, handle)
    driver.execute_script(WATCH, image)
    times = []
    for move in range(warmup + moves):
        slider.send_keys(Keys.END if move % 2 == 0 else Keys.HOME)
        end = time.monotonic() + 60
        while (w := driver.execute_script("return window.__vae_lab"))["shown"] is None:
            if time.monotonic() > end:
                raise TimeoutError("the image did not change after a key press")
            time.sleep(0.01)
        if move >= warmup:
            times.append(w["shown"] - w["pressed"])
        time.sleep(0.3)  # the strip follows; let the page settle before the next move
    return np.array(times)


@dataclass
class Contender:
    """A page to time: how it is served, the large image and the first slider's keyboard target (CSS selectors),
    and the code it takes."""

    serve: Callable[[Core, int], Any]
    image: str
    handle: str
    code: Callable[[], int]


def contenders() -> dict[str, Contender]:
    """The two libraries' core pages, and the whole explorer page for reference."""
    from vae_lab.explorer import page

    return {
        "Gradio": Contender(serve_gradio, "#image-a img", "input[type=range]", lambda: lines_of_code(gradio_page)),
        "Panel": Contender(serve_panel, 'img[alt="image-a"]', ".noUi-handle", lambda: lines_of_code(panel_page)),
        "Gradio, the whole explorer": Contender(serve_explorer, "#image-a img", "#slider-0 input[type=range]",
                                                lambda: lines_of_code(page)),
    }


def compare(catalogue: Catalogue, name: str, moves: int, profile: str, threads: int = 1) -> dict[str, dict]:
    """Each page served in turn and timed in headless Chromium: ms per move, lines of code, the hosts the page
    reached, the library's version."""
    from importlib.metadata import version

    core = Core(catalogue, name, threads)
    results = {}
    for title, page in contenders().items():
        with page.serve(core, free_port()) as url, chromium(f"{profile}/{len(results)}") as driver:
            ms = key_to_image(driver, url, page.image, page.handle, moves)
            results[title] = {"ms": ms, "lines": page.code(), "hosts": hosts(driver),
                              "version": version(title.split(",")[0].lower())}
    return results


def table(results: dict[str, dict]) -> str:
    """The comparison as a markdown table."""
    rows = ["| page | key press → new image, median (90th pct), ms | lines of code | requests to |",
            "|---|--:|--:|---|"]
    for name, r in results.items():
        rows.append(f"| {name} ({r['version']}) | {np.median(r['ms']):.0f} ({np.percentile(r['ms'], 90):.0f}) | "
                    f"{r['lines']} | {', '.join(sorted(r['hosts']))} |")
    return "\n".join(rows)
