"""The report of the ``sr`` family (low-bit super-resolution, one row per epoch): trials and settings
(:mod:`.groups`), per-set tables and the costliest part (:mod:`.tables`), figures (:mod:`.figures`)
and the assembled report (:mod:`.report`)."""
from lowbit_sweeps.analysis.common.writing import FamilyReport
from lowbit_sweeps.analysis.sr.report import is_sr_sweep, write_report

REPORT = FamilyReport("sr", write_report, detects=is_sr_sweep)
