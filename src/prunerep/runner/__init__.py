"""The one runner above every method: specs in, run records out.

    specs = study.plan(cfg, ctx)                 # list[RunSpec | IterativeSpec]
    records = execute(specs, ctx)                # list[RunRecord], one JSON line each

`run_pruning` is one run (prepare → phases → surgery → fine-tune → measure); `execute` fans runs
out over worker processes, keys each on the content of everything it depends on (resume and
caching), saves the pruned networks, then measures their latency serially on idle cores.
"""

from prunerep.runner.execute import LatencySettings as LatencySettings
from prunerep.runner.execute import StudyContext as StudyContext
from prunerep.runner.execute import execute as execute
from prunerep.runner.iterative import IterativeSpec as IterativeSpec
from prunerep.runner.record import RunRecord as RunRecord
from prunerep.runner.record import read_records as read_records
from prunerep.runner.record import write_records as write_records
from prunerep.runner.run import RunSpec as RunSpec
from prunerep.runner.run import run_pruning as run_pruning
