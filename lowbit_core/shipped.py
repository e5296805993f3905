"""Where the sweeps shipped with the package lie: ``sweeps/`` of a checkout (or an editable install),
or ``lowbit_sweeps/sweeps/`` of an installed wheel (both are the package ``lowbit_sweeps.sweeps``)."""
from __future__ import annotations

from pathlib import Path


def sweeps_dir() -> Path | None:
    """The folder of the shipped sweep files (the ``lowbit_sweeps.sweeps`` package: a checkout's
    ``sweeps/`` or the installed copy), or None when it is absent."""
    try:
        import lowbit_sweeps.sweeps as shipped
    except ImportError:
        return None
    folders = [Path(p) for p in shipped.__path__ if Path(p).is_dir()]  # a folder without __init__.py
    return folders[0] if folders else None
