"""Process-wide settings of the processes that merge batches: the resolve, merge and events workers
(``sinks.kafka.stage.serve_worker``), the T+1 loader, and the benchmarks that run their code in-process.

A batch of thousands of changes builds hundreds of thousands of short-lived dicts, tuples and sets that
live as long as the batch: with CPython's default thresholds (700, 10, 10) they are promoted to the
oldest generation, and its full collections scan every object the process holds (the name-pinyin
dictionaries, the resolver's caches) again and again. On ``kintsmesh bench resolve`` (20,000 people,
237,240 candidates) that was 13.9 of 53 s. These values are freed by reference counting anyway; the
cyclic collector is only for the rare cycle (an exception's traceback), so it runs rarely.
"""

from __future__ import annotations

import gc

# young objects collected every 50,000 allocations; full collections after 10 middle ones, and then only
# once the survivors since the last grew by a quarter of the old generation (CPython's own rule)
BATCH_GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc_for_batches() -> None:
    """Freeze what start-up built (imports, dictionaries: never garbage) out of the collector's scans and
    collect rarely (``BATCH_GC_THRESHOLDS``). Call once, when the process has set up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*BATCH_GC_THRESHOLDS)
