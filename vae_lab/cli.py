"""What every entry point shares: turning user mistakes into one clear line and a non-zero exit."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from vae_lab.errors import user_error


@contextmanager
def user_errors() -> Iterator[None]:
    """Print a VaeLabError as `error: …` on stderr and exit with status 2; let real bugs raise."""
    try:
        yield
    except Exception as err:
        cause = user_error(err)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
