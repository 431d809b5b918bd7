"""The optional parts of the suite, each a pip extra of landscape (pyproject.toml): a part asked
for but not installed ends in one line naming the extra that installs it, not a traceback.

Example:
    >>> require("json", "none", "reading JSON").__name__
    'json'
    >>> require("no_such_module_here", "ray", "--ray")
    Traceback (most recent call last):
    ...
    landscape.optional.MissingExtra: --ray needs the no_such_module_here package: pip install 'landscape[ray]'
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ValueError):
    """An optional part was asked for and its package is not installed."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """``module`` imported, for ``what`` (an option or a feature); if it is not installed, a
    ``MissingExtra`` that says ``pip install 'landscape[<extra>]'``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{what} needs the {module} package: pip install 'landscape[{extra}]'") from None
