"""TensorBoard's first views of a run, in headless Chromium at 1400 × 1000 (skipped without it): the Time Series and
Scalars tabs open on the loss curves, the Text tab on the end-of-run table; a sweep's HParams table shows what tells
its runs apart and the headline metrics without scrolling."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from benchmarks.browser import chromium_missing, free_port
from tests.test_explore_browser import browser, wait_for  # noqa: F401 (browser: a fixture)

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))

# Every tf-category-paginated-view (the Scalars and Text tabs' groups), through shadow roots: [name, opened, tags].
CATEGORIES = """const out = [];
function walk(root) { for (const e of root.querySelectorAll('*')) {
  if (e.tagName === 'TF-CATEGORY-PAGINATED-VIEW' && e.category && e.category.name)
    out.push([e.category.name, e.opened, e.category.items.length]);
  if (e.shadowRoot) walk(e.shadowRoot); } }
walk(document); return out;"""


def served(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/data/runs", timeout=2).status == 200
    except OSError:
        return False


def serve(logdir):
    """TensorBoard serving `logdir` on a free port of 127.0.0.1: its URL, while the generator lasts."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host",
                               "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: served(url), 60)
        yield url
    finally:
        server.terminate()
        server.wait(30)


@pytest.fixture(scope="module")
def tb_url(cvae_run):
    """TensorBoard serving the tiny CVAE run."""
    yield from serve(cvae_run / "tensorboard")


@pytest.fixture(scope="module")
def sweep_url(tiny_sweep):
    """TensorBoard serving the tiny 2 × 2 sweep (model=vae,beta_vae × model.beta=1,4)."""
    yield from serve(tiny_sweep)


def test_time_series_opens_on_the_loss_curves(tb_url, browser):  # noqa: F811
    """The first group is `Loss` (train, train's epoch means, validation), open; the second the train-against-
    validation figure; every other group (the one-dot test/, time/, mem/ values among them) collapsed below."""
    browser.get(f"{tb_url}/#timeseries")
    script = """return Array.from(document.querySelectorAll('.card-group')).map(g => [
      g.querySelector('.group-title').textContent.trim(), g.querySelectorAll('card-view').length,
      g.querySelector('metrics-card-group-toolbar').textContent.trim()])"""
    groups = wait_for(lambda: (found := browser.execute_script(script)) and found[0][1] and found)
    assert groups[0][:2] == ["Loss", 3] and groups[1][0] == "curves" and groups[1][1] == 1, groups
    assert not [g for g in groups[2:] if g[1]], groups  # collapsed
    assert {"test", "time", "mem"} <= {g[0] for g in groups[2:]}
    assert {g[0]: g[2] for g in groups}["latent"].endswith("17 cards")  # the KL bars and 2 × 8 histograms


def test_the_scalars_tab_opens_on_the_loss_curves(tb_url, browser):  # noqa: F811
    browser.get(f"{tb_url}/#scalars")
    categories = wait_for(lambda: browser.execute_script(CATEGORIES))
    assert categories[0] == ["Loss", True, 3], categories
    assert not [c for c in categories if c[0] in ("test", "time", "mem", "epoch") and c[1]], categories


def test_the_text_tab_opens_on_the_end_of_run_table(tb_url, browser):  # noqa: F811
    browser.get(f"{tb_url}/#text")
    categories = wait_for(lambda: browser.execute_script(CATEGORIES))
    assert [c[:2] for c in categories[:2]] == [["Results", True], ["config", True]], categories
    rows = """let n = 0; function walk(root) { for (const e of root.querySelectorAll('*')) {
      if (e.tagName === 'TR') n++; if (e.shadowRoot) walk(e.shadowRoot); } } walk(document); return n;"""
    assert wait_for(lambda: browser.execute_script(rows) > 10)  # the table rendered, a row per metric


def test_hparams_shows_the_headline_metrics_in_1400_px(sweep_url, browser):  # noqa: F811
    """The sweep's table view: the runs, the columns that tell them apart (model, β; one net per model, one seed:
    none), then −ELBO, NLL and FID, their headers within the 1400 px page."""
    browser.get(f"{sweep_url}/#hparams")
    script = """const out = []; function walk(root) { for (const e of root.querySelectorAll('*')) {
      if (e.classList && e.classList.contains('table-header')) {
        const r = e.getBoundingClientRect(); out.push([e.textContent.trim(), r.left, r.right]); }
      if (e.shadowRoot) walk(e.shadowRoot); } } walk(document); return out;"""
    headers = wait_for(lambda: (found := browser.execute_script(script)) and "FID" in [h[0] for h in found] and found)
    width = browser.execute_script("return document.documentElement.clientWidth")
    names = [name for name, _, _ in headers]
    assert names[:7] == ["Trial ID", "Show Metrics", "model", "β", "−ELBO", "NLL (IWAE)", "FID"], names
    assert width >= 1380 and all(0 <= left and right <= width for _, left, right in headers[:7]), (width, headers)
