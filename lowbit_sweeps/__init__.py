"""lowbit-sweeps' command line (``launch``), reports (``analysis``) and shipped sweep files (``sweeps``),
installed under the project's name: ``lowbit_sweeps.launch``, ``lowbit_sweeps.analysis``,
``lowbit_sweeps.sweeps``, so nothing named ``launch`` or ``analysis`` lands at the top of
site-packages. The library itself is :mod:`lowbit_core`.

In a checkout the three folders stay at the repository root (``python launch/sweep.py`` keeps
working); the wheel maps them under this package (``package_dir`` in ``setup.py``). Here the root is
added to this package's search path when it is a checkout, so both shapes import the same names.
"""
from pathlib import Path as _Path

_root = _Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and (_root / "launch" / "sweep.py").is_file():
    __path__.append(str(_root))  # noqa: F821 -- a package's __path__
del _Path, _root
