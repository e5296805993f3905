"""lowbit-sweeps' command line (``launch``), reports (``analysis``) and shipped sweep files (``sweeps``),
installed under the project's name: ``lowbit_sweeps.launch``, ``lowbit_sweeps.analysis``,
``lowbit_sweeps.sweeps``, so nothing named ``launch`` or ``analysis`` lands at the top of
site-packages. The library itself is :mod:`lowbit_core`.

In a checkout the three folders stay at the repository root (``python launch/sweep.py`` keeps
working); the wheel maps them under this package (``package_dir`` in ``setup.py``). Here the root is
added to this package's search path when it is a checkout, so both shapes import the same names.

:func:`read_results` reads a sweep's results folder: the Parquet parts are the record.
"""
from pathlib import Path as _Path

_root = _Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and (_root / "launch" / "sweep.py").is_file():
    __path__.append(str(_root))  # noqa: F821 -- a package's __path__
del _Path, _root


def read_results(folder):
    """Every row of a sweep's results folder (``results/<sweep>``) as a pandas DataFrame: one row per
    reported (trial, step), the provenance columns, every metric and the trial's config as ``cfg.*``
    columns (:func:`lowbit_core.results.load_results`: the union of the parts' columns, a (trial_key,
    step) written twice kept once, last part wins). A damaged part (truncated, not Parquet, another
    sweep's) is skipped with a ``UserWarning`` naming it; a folder without intact parts or rows raises
    :class:`lowbit_core.results.ResultsError` (one line). The ``_`` files and folders beside the parts
    (``_sweep.json``, ``_trials/``, ``_ray/``, the trackers') are not rows and are not read. Unlike
    ``pandas.read_parquet`` on the folder, which takes the columns of one part, parts written by
    different code versions keep all their columns. For example::

        df = read_results("results/vste_window")
        final = df.sort_values("step").groupby("trial_key").tail(1)   # one row per trial
    """
    import warnings

    from lowbit_core.results import ResultsError, damaged_line, load_results, read_plan

    def skipped(path, reason):
        warnings.warn(f"{damaged_line(path, reason)}; skipped", stacklevel=3)

    try:
        sweep = (read_plan(folder) or {}).get("name")
    except ResultsError:  # an unreadable plan: the parts are still the record
        sweep = None
    return load_results(folder, on_damaged=skipped, sweep=sweep if isinstance(sweep, str) else None)
