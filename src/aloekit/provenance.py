"""What every run records about the software it ran with, so results can be traced and reproduced."""

from __future__ import annotations

import platform
from importlib import metadata

from aloekit import __version__


def package_versions(*packages: str) -> dict[str, str]:
    """aloekit's and Python's versions, plus each of ``packages`` that is installed (absent ones are left out)."""
    out = {"aloekit": __version__, "python": platform.python_version()}
    for package in packages:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out
