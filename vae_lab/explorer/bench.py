"""The explorer's latency per slider move: in process (the decode; the whole event) and through its server."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import torch

from vae_lab.explorer.session import SPAN, Catalogue


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
    from vae_lab.hardware import cpu_description

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
