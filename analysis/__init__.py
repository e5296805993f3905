"""Analysis of sweep results: reads Parquet into pandas, makes plots and summary tables.

Reads Parquet only: nothing in this package imports torch or ray, so a report can be made on any
machine that has the results directory. Entry point: ``python analysis/report.py RESULTS_DIR``.
"""
