"""What every family's report shares: reading a results folder and its plan (:mod:`.load`,
:mod:`.plan`), number and markdown formatting (:mod:`.format`), grouping rows by what varies
(:mod:`.groups`), statistics over seeds and the one verdict rule (:mod:`.stats`), estimator labels
from the registry (:mod:`.estimators`), figure helpers (:mod:`.plotting`) and writing a report
(:mod:`.writing`). Nothing here knows a family's metrics."""
