"""The report of the ``train`` family (CIFAR training, one row per epoch): labels, trial and group
tables (:mod:`.groups`), paired differences and findings (:mod:`.findings`), figures
(:mod:`.figures`) and the assembled report (:mod:`.report`)."""
from lowbit_sweeps.analysis.common.writing import FamilyReport
from lowbit_sweeps.analysis.train.report import is_train_sweep, write_report

REPORT = FamilyReport("train", write_report, detects=is_train_sweep)
