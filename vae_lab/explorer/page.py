"""The explorer's Gradio page: its layout and events; every picture comes from `session.Session`."""

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
from vae_lab.explorer.session import Catalogue, Loaded, Session

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage reports (before gradio is imported)
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import gradio as gr  # the optional `explore` extra

NONE = "(none)"
CSS = (".pixelated img { image-rendering: pixelated; width: 100% !important; height: 100% !important;"
       " max-width: none !important; max-height: none !important; object-fit: contain !important; }"
       " .help p { font-size: 0.85em; opacity: 0.8; margin: 0 !important; }"
       " .problem p { color: #b91c1c; font-weight: 600; margin: 0 !important; }")
HOW_TO_READ = (
    "**How to read this page.** The large picture is what the model draws from the numbers on the sliders at the "
    "right (its *latent code*). Move one slider at a time: the strip under the picture shows what that slider does "
    "over its whole range. Sliders are sorted by how much the model uses them (in nats); *unused* ones change "
    "nothing. Pick a class, try a random design, start from a real test image, or blend two; keep a design with "
    "**download**.")
STEP = 0.01  # slider resolution: every code the page shows is rounded to it, so that sliders and image agree


def _fail(err: Exception) -> gr.Error:
    """A wrong model name (the page's own lists prevent it) as a one-line error."""
    return gr.Error(str(err), print_exception=False)


def _problem(err: Exception) -> dict:
    """A user's mistake as the message under the control that caused it."""
    return gr.update(value=f"⚠ {err}", visible=True)


CLEAR = {"value": "", "visible": False}


def slider_label(dim: int, session: Session) -> str:
    """A slider's name: the factor it best predicts, the latent, and each model's KL in it (`unused`)."""
    parts = []
    for tag, m in zip("AB", session.models):
        prefix = f"{tag} " if len(session.models) > 1 else ""
        if dim >= m.latent_dim:
            parts.append(f"not in {tag}")
        else:
            parts.append(f"{prefix}{m.kl[dim]:.2f} nats" + ("" if m.active[dim] else " (unused)"))
    factor = next((m.factors[dim] for m in session.models if dim < len(m.factors) and m.factors[dim]), None)
    return " · ".join(([factor] if factor else []) + [f"z{dim}"] + parts)


class Page:
    """The event handlers: each rebuilds the session from the chosen names, reads the sliders, returns pictures."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.slots = catalogue.max_latents
        self.files = Path(tempfile.mkdtemp(prefix="vae_lab_explore_"))
        self.threads = torch.get_num_threads()  # the entry point's `threads`

    def session(self, first: str, second: str | None) -> Session:
        """The chosen models' session, torch's thread count set again in the server's worker thread."""
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

    def pictures(self, session: Session, z: np.ndarray, label: int | None) -> list[Any]:
        """The large image(s) and the code (with its class) as JSON."""
        images = session.decode(z, label)
        return [images[0], images[1] if len(images) > 1 else None, {"z": [round(float(v), 6) for v in z], "class": label}]

    def strip_of(self, session: Session, z: np.ndarray, label: int | None, slot: int) -> list[Any]:
        """The traversal strip of slider `slot`'s latent around z, and the line saying what it shows."""
        order = session.order()
        slot = int(slot or 0) if 0 <= int(slot or 0) < len(order) else 0
        dim = order[slot]
        lo, hi = session.reach()[dim]
        rows = " (row A, then row B)" if len(session.models) > 1 else ""
        return [session.traversal(z, dim, label),
                f"The strip: slider z{dim} from {lo:g} to {hi:g}{rows}, every other slider as set."]

    def view(self, session: Session, z: np.ndarray, label: int | None, slot: int) -> list[Any]:
        """Everything that shows the code: the sliders, the large image(s), the code, the strip and its line."""
        z = (np.round(z / STEP) * STEP).astype(np.float32)
        order = session.order()  # slider positions (unused sliders at 0)
        sliders = [round(float(z[order[slot]]), 6) if slot < len(order) else 0.0 for slot in range(self.slots)]
        return [*sliders, *self.pictures(session, z, label), *self.strip_of(session, z, label, slot)]

    @staticmethod
    def conditional(session: Session) -> Loaded | None:
        """The first conditional model on the page (whose classes the class selector lists), if any."""
        return next((m for m in session.models if m.model.conditional), None)

    def choose(self, first: str, second: str | None) -> list[Any]:
        """New model(s): sliders named and ranged, class selector and note shown; start at the prior mean."""
        session = self.session(first, second)
        order, reach = session.order(), session.reach()
        conditional = self.conditional(session)
        label = 0 if conditional else None
        view = self.view(session, session.centre(label), label, 0)
        sliders = [gr.update(visible=False, value=0.0) for _ in range(self.slots)]
        for slot, dim in enumerate(order):
            lo, hi = reach[dim]
            sliders[slot] = gr.update(visible=True, value=view[slot], minimum=float(lo), maximum=float(hi),
                                      label=slider_label(dim, session))
        names = conditional.class_names if conditional else None
        classes = gr.update(visible=bool(conditional), value=label, choices=[(n, i) for i, n in enumerate(names or [])])
        note = session.note()
        return [*sliders, classes, gr.update(value=note, visible=bool(note)),
                gr.update(visible=len(session.models) > 1), *view[self.slots:], 0]

    def move(self, first: str, second: str | None, label: int | None, *values: float) -> list[Any]:
        """A slider moved: re-decode."""
        session = self.session(first, second)
        return self.pictures(session, self.z_of(session, values), label)

    def strip(self, slot: int, first: str, second: str | None, label: int | None, *values: float) -> list[Any]:
        """Slider `slot` moved: its traversal strip around the sliders' code, and `slot` as the latent last moved."""
        session = self.session(first, second)
        return [*self.strip_of(session, self.z_of(session, values), label, slot), slot]

    def set_class(self, first: str, second: str | None, label: int | None, code: dict | None, slot: int,
                  *values: float) -> list[Any]:
        """A new class: the design keeps its offset from the class's prior mean."""
        session = self.session(first, second)
        old = (code or {}).get("class")
        z = self.z_of(session, values)
        if old is not None and label is not None:
            z = z - session.centre(int(old)) + session.centre(int(label))
        return self.view(session, z, label, slot)

    def draw(self, first: str, second: str | None, label: int | None, temperature: float, slot: int) -> list[Any]:
        """A random design: a code from the prior of the class at this variety (temperature)."""
        session = self.session(first, second)
        try:
            z = session.prior(float(temperature), label)
        except (VaeLabError, TypeError, ValueError) as err:
            return [*[gr.update()] * (self.slots + 5), _problem(err)]
        return [*self.view(session, z, label, slot), gr.update(**CLEAR)]

    def reset(self, first: str, second: str | None, label: int | None, slot: int) -> list[Any]:
        """Back to the typical design: the class's prior mean."""
        session = self.session(first, second)
        return self.view(session, session.centre(label), label, slot)

    def random_index(self, first: str, second: str | None) -> int:
        """A random test-image index of the first model's test set."""
        return random.randrange(len(self.session(first, second).first.test))

    def encode(self, first: str, second: str | None, label: int | None, index: float, slot: int) -> list[Any]:
        """Start from test image `index`: sliders to its code, original beside reconstruction, its class."""
        session = self.session(first, second)
        try:
            out = session.encode(int(index) if float(index).is_integer() else index)
        except (VaeLabError, TypeError, ValueError) as err:
            return [*[gr.update()] * (self.slots + 9), _problem(err)]
        label = out["label"] if out["label"] is not None and self.conditional(session) else label
        view = self.view(session, out["z"], label, slot)
        return [*view[: self.slots], label, out["image"], out["reconstruction"], out["about"], *view[self.slots:],
                gr.update(**CLEAR)]

    def interpolate(self, first: str, second: str | None, label: int | None, i: float, j: float, t: float) -> list[Any]:
        """Blend two test images: the code a fraction t of the way, and the whole path as the strip."""
        session = self.session(first, second)
        try:
            out = session.interpolate(int(i), int(j), float(t))
        except (VaeLabError, TypeError, ValueError, OverflowError) as err:
            return [*[gr.update()] * (self.slots + 6), _problem(err)]
        label = out["label"] if out["label"] is not None and self.conditional(session) else label
        view = self.view(session, out["z"], label, 0)
        return [*view[: self.slots], label, *view[self.slots: self.slots + 3], out["strip"], out["about"],
                gr.update(**CLEAR)]

    def download(self, first: str, second: str | None, label: int | None, *values: float) -> list[str]:
        """The current image(s) as PNG and the code (with class and models) as JSON and .npy files."""
        session = self.session(first, second)
        z = self.z_of(session, values)
        folder = Path(tempfile.mkdtemp(dir=self.files))
        paths = []
        for tag, image in zip("AB", session.decode(z, label)):
            path = folder / (f"image_{tag}.png" if len(session.models) > 1 else "image.png")
            Image.fromarray(image).save(path)
            paths.append(str(path))
        conditional = self.conditional(session)
        record = {"z": [float(v) for v in z], "label": label, "models": [m.candidate.name for m in session.models],
                  "class": conditional.class_names[label] if conditional and label is not None else None}
        (folder / "z.json").write_text(json.dumps(record, indent=1) + "\n")
        np.save(folder / "z.npy", z)
        return [*paths, str(folder / "z.json"), str(folder / "z.npy")]


def help_line(text: str) -> gr.Markdown:
    """A one-line help under a control."""
    return gr.Markdown(text, elem_classes="help")


def problem_line(elem_id: str) -> gr.Markdown:
    """The place under a control where its mistakes show (hidden until one happens)."""
    return gr.Markdown(visible=False, elem_id=elem_id, elem_classes="problem")


def picture(label: str, height: int, **kwargs: Any) -> gr.Image:
    """A non-interactive, pixel-sharp image."""
    return gr.Image(label=label, format="png", height=height, interactive=False, elem_classes="pixelated",
                    buttons=[], **kwargs)


def build(catalogue: Catalogue) -> gr.Blocks:
    """The page's layout and the wiring of its events (each with an API name, for the client and the tests)."""
    page = Page(catalogue)
    names = catalogue.names
    with gr.Blocks(title="vae_lab explorer", analytics_enabled=False) as demo:
        gr.Markdown("## vae_lab explorer\n" + HOW_TO_READ, elem_id="how-to-read")
        with gr.Row(visible=len(names) > 1):
            first = gr.Dropdown(names, value=names[0], label="model A", scale=3, info="the sliders: its latents first")
            second = gr.Dropdown([NONE, *names], value=names[1] if len(names) == 2 else NONE,
                                 label="model B, beside A (optional)", scale=3,
                                 info="both draw from the same slider values")
        note = gr.Markdown(visible=False, elem_id="note")
        slot = gr.Number(0, precision=0, visible=False, elem_id="strip-slot")  # the slider last moved
        with gr.Row():
            with gr.Column(scale=3, min_width=300):
                classes = next((c.class_names for c in catalogue.candidates.values() if c.class_names), ())
                label = gr.Dropdown([(n, i) for i, n in enumerate(classes)], value=0 if classes else None,
                                    label="class", visible=bool(classes), elem_id="class",
                                    info="what kind of image to draw; the design keeps its slider changes")
                with gr.Row():
                    draw = gr.Button("random design", size="sm", elem_id="draw")
                    reset = gr.Button("typical design", size="sm", elem_id="reset")
                temperature = gr.Slider(0, 2, value=1.0, step=0.05, label="variety of random designs",
                                        info="0: always the typical design; 1: as varied as the model learned")
                draw_problem = problem_line("draw-problem")
                with gr.Row():
                    index = gr.Number(0, precision=0, label="test image number", min_width=120, elem_id="index")
                    pick = gr.Button("any", size="sm", min_width=60)
                    encode = gr.Button("start from it", size="sm", variant="primary", elem_id="encode")
                help_line("sets the sliders to the code the model reads from that real image")
                encode_problem = problem_line("encode-problem")
                with gr.Row():
                    start = gr.Number(0, precision=0, label="blend from image", min_width=90)
                    end = gr.Number(1, precision=0, label="to image", min_width=90)
                t = gr.Slider(0, 1, value=0.5, step=0.05, label="how far from the first to the second")
                interpolate = gr.Button("blend the two test images", size="sm", variant="primary", elem_id="blend")
                help_line("the strip shows the path from one image to the other")
                path_problem = problem_line("path-problem")
                save = gr.Button("download this design (image and its code)", size="sm", elem_id="download")
                help_line("each model's image as PNG and the code z (.json, .npy): the numbers on the sliders")
                files = gr.File(label="downloads", file_count="multiple", interactive=False, height=80, elem_id="files")
            with gr.Column(scale=4, min_width=360):
                with gr.Row():
                    image_a = picture("A" if len(names) > 1 else "the design", 300, elem_id="image-a")
                    with gr.Column(visible=False) as column_b:
                        image_b = picture("B", 300, elem_id="image-b")
                strip = picture("strip", 110, elem_id="strip", show_label=False)
                strip_note = gr.Markdown(elem_id="strip-note", elem_classes="help")
                with gr.Row():
                    original = picture("test image", 110, elem_id="original")
                    recon = picture("as model A redraws it", 110)
                    about = gr.Textbox(label="its class or factors", interactive=False, lines=2)
                code = gr.JSON(label="the code z (numbers on the sliders)", open=False)
            with gr.Column(scale=3, min_width=300):
                help_line("Each slider is one latent, named by the factor it best predicts where the data has "
                          "known factors; most used first.")
                sliders = [gr.Slider(-3.0, 3.0, value=0.0, step=STEP, label=f"z{k}", elem_id=f"slider-{k}")
                           for k in range(page.slots)]
        models, pictures = [first, second], [image_a, image_b, code]
        shown = [*sliders, *pictures, strip, strip_note]  # what `Page.view` returns
        chosen = {"fn": page.choose, "inputs": models,
                  "outputs": [*sliders, label, note, column_b, *pictures, strip, strip_note, slot]}
        demo.load(**chosen, api_name="choose")
        first.change(**chosen, api_visibility="private")
        second.change(**chosen, api_visibility="private")
        state = [*models, label, *sliders]
        for k, slider in enumerate(sliders):  # the image first; the strip after it, as its own event
            slider.input(page.move, state, pictures, api_name=f"slider_{k}", trigger_mode="always_last",
                         show_progress="hidden", queue=False).then(
                partial(page.strip, k), state, [strip, strip_note, slot], api_name=f"strip_{k}",
                show_progress="hidden", queue=False)
        label.input(page.set_class, [*models, label, code, slot, *sliders], shown, api_name="set_class",
                    show_progress="hidden")
        draw.click(page.draw, [*models, label, temperature, slot], [*shown, draw_problem], api_name="draw")
        reset.click(page.reset, [*models, label, slot], shown, api_name="reset")
        encoded = {"fn": page.encode, "inputs": [*models, label, index, slot],
                   "outputs": [*sliders, label, original, recon, about, *pictures, strip, strip_note,
                               encode_problem]}
        encode.click(**encoded, api_name="encode")
        pick.click(page.random_index, models, index, api_name="random_index").then(**encoded, api_visibility="private")
        interpolate.click(page.interpolate, [*models, label, start, end, t],
                          [*sliders, label, *pictures, strip, strip_note, path_problem], api_name="interpolate")
        save.click(page.download, state, files, api_name="download")
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None) -> str:
    """Serve the page in the background, private and without run history or uploads; its URL."""
    _, url, _ = demo.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=True,
                            inbrowser=False, quiet=True, ssr_mode=False, mcp_server=False, pwa=False,
                            enable_monitoring=False, run_history=False, css=CSS, footer_links=["api"],
                            max_file_size=0, app_kwargs={"middleware": [Middleware(SameOrigin)]})
    return url
