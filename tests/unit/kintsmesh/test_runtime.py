"""tune_gc_for_batches: a merging process collects rarely and never scans what it built at start-up."""

import json
import subprocess
import sys

from kintsmesh.runtime import BATCH_GC_THRESHOLDS

PROBE = """
import gc, json
from kintsmesh.runtime import tune_gc_for_batches
before = gc.get_freeze_count()
tune_gc_for_batches()
print(json.dumps([before, gc.get_freeze_count(), list(gc.get_threshold())]))
"""


def test_a_merging_process_freezes_its_start_up_and_collects_rarely() -> None:
    # in a process of its own: the settings are process-wide and would change this test run's collector
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    before, frozen, thresholds = json.loads(out)
    assert before == 0 and frozen > 1000
    assert tuple(thresholds) == BATCH_GC_THRESHOLDS
    assert BATCH_GC_THRESHOLDS[0] > 700   # CPython's default collects young objects every 700 allocations
