"""The explorer's web page (Gradio): the layout and its events; every picture comes from `session.Session`."""

from __future__ import annotations

import json
import os
import random
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from starlette.middleware import Middleware

from vae_lab.errors import ConfigError, VaeLabError
from vae_lab.explorer.origin import SameOrigin
from vae_lab.explorer.session import SPAN, Catalogue, Session

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage reports (before gradio is imported)
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import gradio as gr  # the optional `explore` extra

NONE = "(none)"
CSS = (".pixelated img { image-rendering: pixelated; width: 100% !important; height: 100% !important;"
       " max-width: none !important; max-height: none !important; object-fit: contain !important; }")


def _fail(err: Exception) -> gr.Error:
    """A user's mistake (bad index, unknown checkpoint) as the page's one-line error."""
    return gr.Error(str(err), print_exception=False)


class Page:
    """The event handlers: each rebuilds the session from the chosen names, reads the sliders, returns pictures."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.slots = catalogue.max_latents
        self.files = Path(tempfile.mkdtemp(prefix="vae_lab_explore_"))
        self.threads = torch.get_num_threads()  # the entry point's `threads`

    def session(self, first: str, second: str | None) -> Session:
        """The session of the chosen model(s), in the server's worker thread (which takes torch's thread count
        from its own OpenMP setting, not the main thread's: set it again, or two threads stall on busy cores)."""
        torch.set_num_threads(self.threads)
        try:
            return self.catalogue.session(first, None if second in (None, "", NONE) else second)
        except VaeLabError as err:
            raise _fail(err) from None

    def z_of(self, session: Session, values: tuple[float, ...]) -> np.ndarray:
        """The code the sliders show (slider k holds latent order[k])."""
        z = np.zeros(session.size, np.float32)
        try:
            for slot, dim in enumerate(session.order()):
                z[dim] = float(values[slot] or 0.0)
        except (TypeError, ValueError) as err:
            raise _fail(ConfigError(f"z: every slider value must be a number ({err})")) from None
        if not np.isfinite(z).all():  # a request made by hand: a NaN would decode to a black image
            raise _fail(ConfigError("z: every slider value must be a finite number, not NaN or ±inf"))
        return z

    def slider_values(self, session: Session, z: np.ndarray) -> list[float]:
        """Slider positions for a code (unused sliders at 0)."""
        values = [0.0] * self.slots
        for slot, dim in enumerate(session.order()):
            values[slot] = round(float(z[dim]), 3)
        return values

    def pictures(self, session: Session, z: np.ndarray, label: int | None) -> list[Any]:
        """The large image(s) and the code as JSON."""
        images = session.decode(z, label)
        return [images[0], images[1] if len(images) > 1 else None, {"z": [float(v) for v in z]}]

    # --- events ------------------------------------------------------------------------------------
    def choose(self, first: str, second: str | None) -> list[Any]:
        """New model(s): relabel and show the sliders, the class selector and the note; decode z = 0."""
        session = self.session(first, second)
        order = session.order()
        sliders = []
        for slot in range(self.slots):
            if slot >= len(order):
                sliders.append(gr.update(visible=False, value=0.0))
                continue
            dim = order[slot]
            parts = []
            for tag, m in zip("AB", session.models):
                if dim < m.latent_dim:
                    state = "" if m.active[dim] else " inactive"
                    parts.append(f"{tag if len(session.models) > 1 else ''} KL {m.kl[dim]:.2f}{state}".strip())
                elif len(session.models) > 1:
                    parts.append(f"not in {tag}")
            sliders.append(gr.update(visible=True, value=0.0, label=f"z{dim} · " + " · ".join(parts)))
        conditional = [m for m in session.models if m.model.conditional]
        names = conditional[0].class_names if conditional else None
        label = gr.update(visible=bool(conditional), value=0 if conditional else None,
                          choices=[(n, i) for i, n in enumerate(names or [])])
        note = session.note() or ""
        z = np.zeros(session.size, np.float32)
        images = self.pictures(session, z, 0)
        strip = session.traversal(z, order[0], 0)
        return [*sliders, label, gr.update(value=note, visible=bool(note)), gr.update(visible=len(session.models) > 1),
                *images, strip]

    def move(self, first: str, second: str | None, label: int | None, *values: float) -> list[Any]:
        """A slider moved: re-decode."""
        session = self.session(first, second)
        return self.pictures(session, self.z_of(session, values), label)

    def strip(self, slot: int, first: str, second: str | None, label: int | None, *values: float) -> np.ndarray | None:
        """The traversal strip of slider `slot`'s latent around the sliders' code (one batched decode per model)."""
        session = self.session(first, second)
        order = session.order()
        return session.traversal(self.z_of(session, values), order[slot], label) if slot < len(order) else None

    def draw(self, first: str, second: str | None, label: int | None, temperature: float) -> list[Any]:
        """A code from the prior at this temperature."""
        session = self.session(first, second)
        try:
            z = session.prior(float(temperature), label)
        except VaeLabError as err:
            raise _fail(err) from None
        return [*self.slider_values(session, z), *self.pictures(session, z, label)]

    def reset(self, first: str, second: str | None, label: int | None) -> list[Any]:
        """Every latent back to 0."""
        session = self.session(first, second)
        z = np.zeros(session.size, np.float32)
        return [*self.slider_values(session, z), *self.pictures(session, z, label)]

    def random_index(self, first: str, second: str | None) -> int:
        """A random test-image index of the first model's test set."""
        return random.randrange(len(self.session(first, second).first.test))

    def encode(self, first: str, second: str | None, label: int | None, index: float) -> list[Any]:
        """Test image `index`: sliders to its posterior mean, original beside reconstruction, its class or factors."""
        session = self.session(first, second)
        try:
            out = session.encode(int(index) if float(index).is_integer() else index)
        except (VaeLabError, TypeError, ValueError) as err:
            raise _fail(err) from None
        label = out["label"] if out["label"] is not None else label
        return [*self.slider_values(session, out["z"]), label, out["image"], out["reconstruction"], out["about"],
                *self.pictures(session, out["z"], label)]

    def interpolate(self, first: str, second: str | None, label: int | None, i: float, j: float,
                    t: float) -> list[Any]:
        """The code a fraction t from test image i's mean to j's, and the path as a strip."""
        session = self.session(first, second)
        try:
            z, strip = session.interpolate(int(i), int(j), float(t), label)
        except (VaeLabError, TypeError, ValueError) as err:
            raise _fail(err) from None
        return [*self.slider_values(session, z), *self.pictures(session, z, label), strip]

    def download(self, first: str, second: str | None, label: int | None, *values: float) -> list[str]:
        """The current image(s) as PNG and the code as JSON and .npy files."""
        session = self.session(first, second)
        z = self.z_of(session, values)
        folder = Path(tempfile.mkdtemp(dir=self.files))
        paths = []
        for tag, image in zip("AB", session.decode(z, label)):
            path = folder / (f"image_{tag}.png" if len(session.models) > 1 else "image.png")
            Image.fromarray(image).save(path)
            paths.append(str(path))
        record = {"z": [float(v) for v in z], "label": label, "models": [m.candidate.name for m in session.models]}
        (folder / "z.json").write_text(json.dumps(record, indent=1) + "\n")
        np.save(folder / "z.npy", z)
        return [*paths, str(folder / "z.json"), str(folder / "z.npy")]


def build(catalogue: Catalogue) -> gr.Blocks:
    """The page's layout and the wiring of its events (each with an API name, for the client and the tests)."""
    page = Page(catalogue)
    names = catalogue.names
    with gr.Blocks(title="vae_lab explorer", analytics_enabled=False) as demo:
        gr.Markdown("## vae_lab latent explorer")
        with gr.Row(visible=len(names) > 1):
            first = gr.Dropdown(names, value=names[0], label="model (A)", scale=3)
            second = gr.Dropdown([NONE, *names], value=names[1] if len(names) == 2 else NONE,
                                 label="beside it (B): the same z decoded by both", scale=3)
        note = gr.Markdown(visible=False)
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    image_a = gr.Image(label="A", format="png", height=360, interactive=False, elem_id="image-a",
                                       elem_classes="pixelated", buttons=[])
                    with gr.Column(visible=False) as column_b:
                        image_b = gr.Image(label="B", format="png", height=360, interactive=False,
                                           elem_classes="pixelated", buttons=[])
                strip = gr.Image(label="traversal of the latent last moved (−3…3) / interpolation path", format="png",
                                 height=120, interactive=False, elem_classes="pixelated", buttons=[])
                with gr.Row():
                    classes = next((c.class_names for c in catalogue.candidates.values() if c.class_names), ())
                    label = gr.Dropdown([(n, i) for i, n in enumerate(classes)], value=0 if classes else None,
                                        label="class (CVAE)", visible=bool(classes))
                    temperature = gr.Slider(0, 2, value=1.0, step=0.05, label="temperature")
                    draw = gr.Button("draw z from the prior")
                    reset = gr.Button("reset")
                with gr.Row():
                    index = gr.Number(0, precision=0, label="test image")
                    pick = gr.Button("random test image")
                    encode = gr.Button("encode")
                with gr.Row():
                    original = gr.Image(label="test image", format="png", height=140, interactive=False,
                                        elem_classes="pixelated", buttons=[])
                    recon = gr.Image(label="reconstruction (A)", format="png", height=140, interactive=False,
                                     elem_classes="pixelated", buttons=[])
                    about = gr.Textbox(label="class / factors", interactive=False)
                with gr.Row():
                    start = gr.Number(0, precision=0, label="from test image")
                    end = gr.Number(1, precision=0, label="to test image")
                    t = gr.Slider(0, 1, value=0.5, step=0.05, label="t")
                    interpolate = gr.Button("interpolate")
                with gr.Row():
                    save = gr.Button("download image (PNG) and z (JSON, .npy)")
                    files = gr.File(label="downloads", file_count="multiple", interactive=False)
                code = gr.JSON(label="z", open=False)
            with gr.Column(scale=2):
                gr.Markdown(f"Latents by their KL on the test set, largest first; sliders −{SPAN:g}…{SPAN:g}.")
                sliders = [gr.Slider(-SPAN, SPAN, value=0.0, step=0.01, label=f"z{k}", elem_id=f"slider-{k}")
                           for k in range(page.slots)]
        models, pictures = [first, second], [image_a, image_b, code]
        chosen = {"fn": page.choose, "inputs": models,
                  "outputs": [*sliders, label, note, column_b, *pictures, strip]}
        demo.load(**chosen, api_name="choose")
        first.change(**chosen, api_visibility="private")
        second.change(**chosen, api_visibility="private")
        state = [*models, label, *sliders]
        for slot, slider in enumerate(sliders):  # the image first; the strip after it, as its own event
            slider.input(page.move, state, pictures, api_name=f"slider_{slot}", trigger_mode="always_last",
                         show_progress="hidden", queue=False).then(
                partial(page.strip, slot), state, strip, api_name=f"strip_{slot}", show_progress="hidden", queue=False)
        label.input(page.move, state, pictures, api_name="set_class", show_progress="hidden")
        draw.click(page.draw, [*models, label, temperature], [*sliders, *pictures], api_name="draw")
        reset.click(page.reset, [*models, label], [*sliders, *pictures], api_name="reset")
        encoded = {"fn": page.encode, "inputs": [*models, label, index],
                   "outputs": [*sliders, label, original, recon, about, *pictures]}
        encode.click(**encoded, api_name="encode")
        pick.click(page.random_index, models, index, api_name="random_index").then(**encoded,
                                                                                  api_visibility="private")
        interpolate.click(page.interpolate, [*models, label, start, end, t], [*sliders, *pictures, strip],
                          api_name="interpolate")
        save.click(page.download, state, files, api_name="download")
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None) -> str:
    """Start serving the page in the background (nothing shared, no analytics, no server-side rendering, no run
    history: Gradio would keep every call in the browser's localStorage, rewritten on each event, so that each slider
    move takes longer than the last; no uploads, which the page never needs; nothing done for another site's page:
    `SameOrigin`); its URL."""
    _, url, _ = demo.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=True,
                            inbrowser=False, quiet=True, ssr_mode=False, mcp_server=False, pwa=False,
                            enable_monitoring=False, run_history=False, css=CSS, footer_links=["api"],
                            max_file_size=0, app_kwargs={"middleware": [Middleware(SameOrigin)]})
    return url
