"""The report of the ``gradstats`` family (gradient statistics of sign estimators on a binary ResNet,
initialized and pretrained): one row per trial with layer summaries (:mod:`.trials`), vSTE-vs-nSTE
pairs and the findings (:mod:`.compare`), figures (:mod:`.figures`), the assembled report
(:mod:`.report`)."""
from lowbit_sweeps.analysis.common.writing import FamilyReport
from lowbit_sweeps.analysis.gradstats.report import is_gradstats_sweep, write_report

REPORT = FamilyReport("gradstats", write_report, detects=is_gradstats_sweep)
