"""How a config check speaks: an error that stops the run before any job, or a note that lets it go on."""
from __future__ import annotations

import sys


class ConfigError(ValueError):
    """The configuration cannot be run; the message names the key and what was expected."""


def note(message: str) -> None:
    """Something that runs, but perhaps not as the user thinks: to stderr, with ``note:`` in front."""
    print(f"note: {message}", file=sys.stderr, flush=True)
