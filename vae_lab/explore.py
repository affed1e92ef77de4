"""`python -m vae_lab.explore ckpt_path=…`: a local web page to move a model's latents and watch its images change."""

import errno
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from vae_lab.cli import entry_point
from vae_lab.errors import ConfigError, check_number
from vae_lab.explorer.runs import candidates
from vae_lab.explorer.session import Catalogue


def check(cfg: DictConfig) -> None:
    """Reject bad arguments before anything loads."""
    check_number("kl_images", cfg.kl_images, whole=True, minimum=2)
    check_number("threads", cfg.threads, whole=True, minimum=1)
    check_number("port", cfg.port, whole=True, minimum=1, maximum=65535, nullable=True)
    check_address(str(cfg.host), cfg.port)
    paths = cfg.ckpt_path
    if isinstance(paths, ListConfig) and len(paths) > 2:
        raise ConfigError(f"ckpt_path: {len(paths)} checkpoints; the page shows one, or two side by side "
                          "(give a folder with run= to choose among more)")


def check_address(host: str, port: int | None) -> None:
    """One line if host:port cannot be served, before any model loads."""
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


def page_module() -> ModuleType:
    """vae_lab.explorer.page, or one line saying which extra it needs."""
    try:
        from vae_lab.explorer import page
    except ImportError as err:
        raise ConfigError(f"the explorer needs the `explore` extra: pip install -e '.[explore]' ({err})") from err
    return page


def opening(shelf: Catalogue) -> tuple[str, str | None]:
    """The model the page opens with, and the one beside it when exactly two are given."""
    return shelf.names[0], shelf.names[1] if len(shelf.names) == 2 else None


@contextmanager
def serving(shelf: Catalogue, host: str, port: int | None) -> Iterator[tuple[Any, str]]:
    """The page served on host:port until the block ends, its opening models loaded first."""
    page = page_module()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request of the page
    demo = page.build(shelf)
    shelf.session(*opening(shelf))
    try:
        yield demo, page.launch(demo, host, port)
    finally:
        demo.close()


def explore(cfg: DictConfig) -> None:
    """Serve the page until interrupted."""
    with serving(catalogue(cfg), cfg.host, cfg.port) as (demo, url):
        print(f"vae_lab explorer: {url}  (Ctrl+C to stop)", flush=True)
        demo.block_thread()


main = entry_point("explore")(explore)  # python -m vae_lab.explore


if __name__ == "__main__":
    main()
