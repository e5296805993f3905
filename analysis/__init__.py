"""Analysis of sweep results: reads Parquet into pandas, makes plots and summary tables.

Reads Parquet only (through :mod:`lowbit_core.results`): nothing in this package imports torch or
ray, so a report can be made on any machine that has the results directory. Layout:
:mod:`analysis.common` (loading, the plan, formatting, statistics and the verdict rule, estimator
labels, plotting and writing helpers), one package per family's report (:mod:`analysis.probe`,
:mod:`analysis.train`), and :mod:`analysis.report`, the CLI (``python analysis/report.py RESULTS_DIR``;
``main(argv) -> int`` for a console script), which picks the family's report.
"""
