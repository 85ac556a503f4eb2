"""Where real datasets live by default: one definition for the package, its scripts and tests."""
from __future__ import annotations

import os

__all__ = ["default_root"]

# The repository (or the folder an installed package sits in): gkdfast/data/_root.py -> ../../..
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_root() -> str:
    """The data root: ``$GKDFAST_DATA`` if set, else ``shared/data`` beside the repository
    (``<repo>/../shared/data``), the layout of the development machines and CI.

    The folder need not exist; readers report a missing dataset by its full path.  For an installed
    (not editable) package "beside the repository" is inside the environment, so set
    ``GKDFAST_DATA`` or pass a path.

    Example:
        >>> import os
        >>> os.path.basename(default_root()) == "data" or "GKDFAST_DATA" in os.environ
        True
    """
    env = os.environ.get("GKDFAST_DATA")
    if env:
        return env
    return os.path.normpath(os.path.join(_REPO, "..", "shared", "data"))
