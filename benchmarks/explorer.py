"""`python -m benchmarks.explorer ckpt_path=…` (`make bench-explore`): the explorer's latency per slider move. In
headless Chromium, key press to new image, for the whole page and for its core in Gradio and in Panel
(`libraries=N`, benchmarks/libraries.py); then in process (the decode; the whole event) and through its server
(`bench=N`)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from benchmarks import with_vae_lab_conf
from benchmarks.browser import chromium_missing
from vae_lab.cli import user_errors
from vae_lab.errors import ConfigError, check_number
from vae_lab.explore import catalogue, opening, page_module, serving
from vae_lab.explorer.session import SPAN, Catalogue
from vae_lab.hardware import cpu_description


def timed(call: Callable[[int], object], n: int, warmup: int = 3) -> np.ndarray:
    """Milliseconds of each of n calls (after `warmup` untimed ones)."""
    for i in range(warmup):
        call(i % n)
    out = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - start) * 1000)
    return np.array(out)


def machine() -> str:
    """This machine in one line, with its load (this process's own work included): a timing on busy cores is not a
    clean number."""
    return (f"{cpu_description()}, torch threads {torch.get_num_threads()}, "
            f"load average {os.getloadavg()[0]:.1f} (this bench included)")


def bench(shelf: Catalogue, url: str, first: str, second: str | None, n: int) -> dict[str, np.ndarray]:
    """Time n slider moves three ways and print the median and 90th percentile of each (ms)."""
    import httpx

    from vae_lab.explorer.page import Page

    page, session = Page(shelf), shelf.session(first, second)
    rng = np.random.default_rng(0)
    values = rng.uniform(-SPAN, SPAN, (n + 1, page.slots)).round(2)
    label = 0 if any(m.model.conditional for m in session.models) else None
    with httpx.Client(base_url=url, timeout=60) as http:
        def request(i: int) -> None:  # the page's own request for a slider move (its events skip the queue)
            http.post("/gradio_api/run/slider_0", json={"data": [first, second, label, *values[i]]}).raise_for_status()

        results = {  # the server first: it runs start-up work for its first several seconds; warm it up as long
            "HTTP request to the server, image back": timed(request, n, warmup=n),
            "decode (in process)": timed(lambda i: session.decode(page.z_of(session, values[i]), label), n),
            "event handler (in process)": timed(lambda i: page.move(first, second, label, *values[i]), n),
            "then the traversal strip (in process)": timed(lambda i: page.strip(0, first, second, label, *values[i]), n),
        }
    print(f"explorer latency per slider move, {n} moves; {' | '.join(m.candidate.name for m in session.models)}")
    print(f"machine: {machine()}")
    for name, ms in results.items():
        print(f"  {name:44s} median {np.median(ms):7.1f} ms   p90 {np.percentile(ms, 90):7.1f} ms")
    return results


def libraries(shelf: Catalogue, moves: int, threads: int) -> None:
    """The explorer's core in Gradio and in Panel (and the whole page), timed in headless Chromium: print a table."""
    from benchmarks.libraries import compare, table

    with tempfile.TemporaryDirectory(prefix="vae_lab_chromium_") as profile:
        results = compare(shelf, shelf.names[0], moves, profile, threads)
    print(f"key press to new image in headless Chromium, {moves} moves each; {shelf.names[0]}")
    print(f"machine: {machine()}")
    print(table(results))


def check(cfg: DictConfig) -> None:
    """One line for bad counts, or for what the browser comparison lacks, before any model loads."""
    check_number("bench", cfg.bench, whole=True, minimum=0)
    check_number("libraries", cfg.libraries, whole=True, minimum=0)
    if not cfg.bench and not cfg.libraries:
        raise ConfigError("bench=0 and libraries=0: nothing to time")
    page_module()
    if cfg.libraries:
        if reason := chromium_missing():
            raise ConfigError(f"libraries={cfg.libraries} times the pages in a browser, and {reason}")
        try:
            import panel  # noqa: F401
        except ImportError as err:
            raise ConfigError(f"libraries= needs the `panel` extra (`make bench-explore` installs it): {err}") from err


def explorer(cfg: DictConfig) -> None:
    """Time `libraries` key presses in each library's page, then `bench` slider moves through the served page."""
    check(cfg)
    shelf = catalogue(cfg)
    if cfg.libraries:
        libraries(shelf, cfg.libraries, cfg.threads)
    if cfg.bench:
        with serving(shelf, cfg.host, cfg.port) as (_, url):
            bench(shelf, url, *opening(shelf), cfg.bench)


@hydra.main(version_base="1.3", config_path="conf", config_name="explorer")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    with user_errors():
        explorer(cfg)


if __name__ == "__main__":
    sys.argv = with_vae_lab_conf(sys.argv)
    main()
