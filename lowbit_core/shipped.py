"""Where the sweeps shipped with the package lie: ``sweeps/`` of a checkout (or an editable install),
or the ``lowbit_sweeps/sweeps`` package data of an installed wheel."""
from __future__ import annotations

from pathlib import Path


def sweeps_dir() -> Path | None:
    """The folder of the shipped sweep files, or None when neither location exists."""
    try:
        import lowbit_sweeps.sweeps as installed

        folder = Path(installed.__file__).parent
        if folder.is_dir():
            return folder
    except ImportError:
        pass
    checkout = Path(__file__).resolve().parents[1] / "sweeps"
    return checkout if checkout.is_dir() else None
