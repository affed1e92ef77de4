"""The docs cannot drift: their Python examples run, their links resolve, and the console is what they promise."""

from __future__ import annotations

import functools
import re
import subprocess

import pytest

from tests.conftest import CLASSIFIER_CACHE, ROOT
from vae_lab.cli import LIBRARY_NOISE, run_summary

PAGES_WITH_CODE = ("README.md", "docs/api.md")
LINK = re.compile(r"\]\(((?:docs/)?[\w./-]+\.(?:md|png))\)")


def python_blocks(page: str) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    return re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("page", PAGES_WITH_CODE)
def test_python_examples_run(page, cvae_run, tmp_path, monkeypatch):
    """Every ```python block, run in order in one namespace, with a tiny CVAE at RUN/checkpoints/last.ckpt."""
    import vae_lab.evaluate

    blocks = python_blocks(page)
    assert blocks, f"{page} has no python examples"
    (tmp_path / "RUN" / "checkpoints").mkdir(parents=True)
    (tmp_path / "RUN" / "checkpoints" / "last.ckpt").symlink_to(cvae_run / "checkpoints" / "last.ckpt")
    (tmp_path / "data").symlink_to(ROOT / "data")
    monkeypatch.chdir(tmp_path)
    quick = functools.partial(vae_lab.evaluate.get_classifier, train_subset=2000, max_steps=3,
                              cache_dir=CLASSIFIER_CACHE)  # the tests' quick classifier, not the real one
    monkeypatch.setattr(vae_lab.evaluate, "get_classifier", quick)
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"{page} python block {number}", "exec"), namespace)  # noqa: S102 — our own docs
        except Exception as err:  # noqa: BLE001 — say which block failed
            pytest.fail(f"{page}, python block {number}: {type(err).__name__}: {err}\n{block}")
    if page == "docs/api.md":
        metrics = namespace["metrics"]
        assert metrics["test/nll_iwae"] <= metrics["test/nelbo"] + 1e-3 and 0 <= metrics["test/cond_accuracy"] <= 1


@pytest.mark.parametrize("page", ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))])
def test_links_resolve(page):
    folder = (ROOT / page).parent
    for target in LINK.findall((ROOT / page).read_text()):
        assert (folder / target).exists(), f"{page} links to {target}, which does not exist"


def test_readme_is_a_guide():
    assert len((ROOT / "README.md").read_bytes()) <= 25_000
    text = (ROOT / "README.md").read_text()
    assert not re.search(r"this session|earlier session|previous session", text, flags=re.IGNORECASE)


def test_a_run_ends_with_its_summary_and_no_library_noise(cvae_cli):
    out, result = cvae_cli
    assert f"run {out}: ok, 1 epoch," in result.stdout
    assert "test: −ELBO" in result.stdout and "cond acc" in result.stdout
    assert f"tensorboard --logdir {out / 'tensorboard'} --host 127.0.0.1" in result.stdout
    for message, _ in LIBRARY_NOISE:
        assert not re.search(message, result.stderr), message
    assert "💡 Tip" not in result.stderr and "litlogger" not in result.stderr
    assert "classifier:" not in result.stderr and "IWAE bound" not in result.stderr  # no progress bars in a log


def test_summary_names_what_a_run_has():
    record = {"status": "ok", "epochs": 3, "time/train_seconds": 12.3, "test/nelbo": 101.234, "test/mig": 0.25}
    text = run_summary(record, "/somewhere/run")
    assert text.splitlines()[0] == "run /somewhere/run: ok, 3 epochs, 12 s of training"
    assert "−ELBO 101.2 · MIG 0.25" in text and "FID" not in text


@pytest.mark.parametrize(("args", "host"), [([], "127.0.0.1"), (["TB_HOST=0.0.0.0"], "0.0.0.0")])
def test_make_tb_serves_on_this_machine_unless_asked(args, host):
    dry = subprocess.run(["make", "-n", "tb", *args], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    line = next(line for line in dry.splitlines() if "tensorboard" in line)
    assert f"--host {host}" in line and "--bind_all" not in line


def test_a_sweeps_report_goes_into_its_page_verbatim_with_its_figures(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("report_into_page", ROOT / "scripts" / "report_into_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sweep, docs = tmp_path / "sweep", tmp_path / "docs"
    (sweep / "figures").mkdir(parents=True)
    docs.mkdir()
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(sweep / "figures" / "beta_tradeoff.png")
    (sweep / "report.md").write_text("# vae_lab report\n\nUnrounded: [report.csv](report.csv).\n\n## Headline\n\n"
                                     "| a |\n|--|\n| 1 |\n\n### Fig\n\n![Fig](figures/beta_tradeoff.png)\n")
    page = docs / "results.md"
    page.write_text("# Results\n\nintro\n\n<!-- report:begin -->\nold table\n<!-- report:end -->\n\nafter\n")
    module.main(sweep, page, docs / "img" / "results")
    text = page.read_text()
    assert text.startswith("# Results\n\nintro\n\n<!-- report:begin -->\n## vae_lab report\n") and text.endswith("after\n")
    assert "old table" not in text and "### Headline" in text and "#### Fig" in text and "| 1 |" in text
    assert "![Fig](img/results/beta_tradeoff.png)" in text and f"`{sweep / 'report.csv'}`" in text
    with Image.open(docs / "img" / "results" / "beta_tradeoff.png") as copied:  # palette, same picture
        assert copied.mode == "P" and copied.size == (40, 30) and copied.convert("RGB").getpixel((5, 5)) == (200, 10, 10)
    module.main(sweep, page, docs / "img" / "results")  # again: the same page
    assert page.read_text() == text


def test_configuration_page_is_generated_from_the_schema():
    """docs/configuration.md's option tables are what scripts/configuration_page.py writes from the configs and the
    constructors' signatures today: a new option, setting or type makes this fail until the page is re-made."""
    from scripts.configuration_page import PAGE, page_text

    current = PAGE.read_text()
    assert page_text(current) == current, "docs/configuration.md is stale: run python scripts/configuration_page.py"
