"""The explorer's core in Gradio and in Panel (how its library was chosen): both draw the model's own decodes, and
their code is counted fairly. Their latency in a browser is in tests/test_explore_browser.py."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from benchmarks.libraries import Core, lines_of_code
from tests.explorer_helpers import tiny_checkpoint
from vae_lab.explorer.runs import candidates
from vae_lab.explorer.session import Catalogue


@pytest.fixture(scope="module")
def core(tmp_path_factory, data_dir, one_thread) -> Core:
    path = tiny_checkpoint(tmp_path_factory.mktemp("libraries"), "model=vae", "model.latent_dim=6")
    shelf = Catalogue(candidates([str(path)], None), kl_images=300)
    return Core(shelf, shelf.names[0])


def counted(a: int) -> int:
    """A docstring
    over two lines."""
    # a comment
    b = a + 1  # code with a comment

    return b


def test_lines_of_code_leave_out_docstrings_comments_and_blanks():
    assert lines_of_code(counted) == 3  # def, b = …, return
    assert lines_of_code(Core) >= 15


def test_the_core_decodes_the_sliders_code_as_the_model_does(core):
    session, values = core.session, [0.5, -1.0, 2.0, 0.0, 3.0, -3.0]
    z = np.zeros(6, np.float32)
    z[session.order()] = values  # slider k holds latent order[k]
    assert np.array_equal(core.image(*values), session.decode(z)[0])
    assert np.array_equal(core.strip(2, *values), session.traversal(z, session.order()[2]))
    assert core.labels[0] == f"z{session.order()[0]} · KL {session.first.kl[session.order()[0]]:.2f}"


def test_the_panel_page_redraws_the_image_and_strip_of_the_slider_moved(core):
    pytest.importorskip("panel", reason="the `panel` extra is not installed")
    from benchmarks.libraries import panel_page

    layout = panel_page(core)()
    (image, strip), sliders = layout[0], list(layout[1])
    assert [s.label for s in sliders] == core.labels
    before = image.object
    sliders[1].value = 2.5  # the watcher runs at once
    values = [0.0, 2.5, 0.0, 0.0, 0.0, 0.0]
    assert image.object != before
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(image.object))), core.image(*values))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(strip.object))), core.strip(1, *values))


def test_the_gradio_page_has_a_slider_per_latent_in_kl_order(core):
    gr = pytest.importorskip("gradio", reason="the `explore` extra is not installed")
    from benchmarks.libraries import gradio_page

    demo = gradio_page(core)
    assert [b.label for b in demo.blocks.values() if isinstance(b, gr.Slider)] == core.labels
