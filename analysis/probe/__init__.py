"""The report of the ``probe`` family (one-layer budget probes): labels and group keys
(:mod:`.groups`), tables (:mod:`.tables`), the method comparison (:mod:`.methods`), the budget curve
against epsilon (:mod:`.budget_curve`), methods at equal loss evaluations (:mod:`.cost`), findings
(:mod:`.findings`), figures (:mod:`.figures`) and the assembled report (:mod:`.report`)."""
from lowbit_sweeps.analysis.common.writing import FamilyReport
from lowbit_sweeps.analysis.probe.report import budget_warnings, write_report

# Probe is the report of folders without a plan whose rows no other family claims (as before plans).
REPORT = FamilyReport("probe", write_report, detects=lambda df: True, warnings=budget_warnings)
