"""`python -m vae_lab.explore ckpt_path=…`: a local web page to move a model's latents and watch its images change."""

from __future__ import annotations

import errno
import logging
import socket
import tempfile

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from vae_lab.cli import entry_point, user_errors
from vae_lab.errors import ConfigError, check_number
from vae_lab.explorer.runs import candidates
from vae_lab.explorer.session import Catalogue


def check(cfg: DictConfig) -> None:
    """Reject bad arguments before anything loads."""
    check_number("kl_images", cfg.kl_images, whole=True, minimum=2)
    check_number("threads", cfg.threads, whole=True, minimum=1)
    check_number("bench", cfg.bench, whole=True, minimum=0)
    check_number("libraries", cfg.libraries, whole=True, minimum=0)
    check_number("port", cfg.port, whole=True, minimum=1, maximum=65535, nullable=True)
    check_address(str(cfg.host), cfg.port)
    paths = cfg.ckpt_path
    if isinstance(paths, ListConfig) and len(paths) > 2:
        raise ConfigError(f"ckpt_path: {len(paths)} checkpoints; the page shows one, or two side by side "
                          "(give a folder with run= to choose among more)")


def check_address(host: str, port: int | None) -> None:
    """The page can be served at host (and port, when given): one line if the host is no name or address of this
    machine or the port is taken, before any model loads (the server would print its own errors, then a traceback)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as err:
        raise ConfigError(f"host={host}: not an address or host name this machine knows ({err}); 127.0.0.1 serves "
                          "only this machine, 0.0.0.0 the network") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ConfigError(f"port={port}: in use on {host} by another program; choose another, or leave port "
                                  "out (the first free one from 7860)") from None
            raise ConfigError(f"host={host}: cannot serve there ({err.strerror}); 127.0.0.1 serves only this "
                              "machine, 0.0.0.0 the network") from None


def catalogue(cfg: DictConfig) -> Catalogue:
    """The checkpoints named by ckpt_path= and found under run=, ready to load on first use."""
    check(cfg)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    paths = OmegaConf.to_container(cfg.ckpt_path) if isinstance(cfg.ckpt_path, ListConfig) else cfg.ckpt_path
    return Catalogue(candidates(paths, cfg.run), cfg.data_dir, cfg.kl_images, cfg.device)


def libraries(shelf: Catalogue, moves: int, threads: int) -> None:
    """The explorer's core in Gradio and in Panel (and the whole page), timed in headless Chromium: print a table."""
    from vae_lab.explorer.bench import machine
    from vae_lab.explorer.libraries import chromium_missing, compare, table

    if reason := chromium_missing():
        raise ConfigError(f"libraries={moves} times the pages in a browser, and {reason}")
    with tempfile.TemporaryDirectory(prefix="vae_lab_chromium_") as profile:
        results = compare(shelf, shelf.names[0], moves, profile, threads)
    print(f"key press to new image in headless Chromium, {moves} moves each; {shelf.names[0]}")
    print(f"machine: {machine()}")
    print(table(results))


def explore(cfg: DictConfig) -> None:
    """Serve the page until interrupted (with bench=N, time N slider moves; with libraries=N, time N key presses
    in each library's page; and exit)."""
    shelf = catalogue(cfg)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request of the page
    try:
        from vae_lab.explorer import page
    except ImportError as err:
        raise ConfigError(f"the explorer needs the `explore` extra: pip install -e '.[explore]' ({err})") from err
    if cfg.libraries:
        try:
            import panel  # noqa: F401
        except ImportError as err:
            raise ConfigError(f"libraries= needs the `panel` extra: pip install -e '.[panel]' ({err})") from err
        return libraries(shelf, cfg.libraries, cfg.threads)
    demo = page.build(shelf)
    first = shelf.names[0]
    second = shelf.names[1] if len(shelf.names) == 2 else None
    shelf.session(first, second)  # load (and measure) before serving, so the first page opens at once
    url = page.launch(demo, cfg.host, cfg.port)
    if cfg.bench:
        from vae_lab.explorer.bench import bench

        try:
            bench(shelf, url, first, second, cfg.bench)
        finally:
            demo.close()
        return
    print(f"vae_lab explorer: {url}  (Ctrl+C to stop)", flush=True)
    try:
        demo.block_thread()
    finally:
        demo.close()


@entry_point("explore")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    with user_errors():
        explore(cfg)


if __name__ == "__main__":
    main()
