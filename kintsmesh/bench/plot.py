"""Lag over time as a PNG next to a benchmark's JSON (``bench/results/<stage>-lag.png``)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from kintsmesh.bench import RESULTS
from kintsmesh.watch import percentile


def per_second(series: list[tuple[float, float]]) -> list[tuple[int, float, float]]:
    """(second since the first sample, p50, p99) of the lags observed in each second."""
    if not series:
        return []
    start = min(at for at, _ in series)
    buckets: dict[int, list[float]] = defaultdict(list)
    for at, lag in series:
        buckets[int(at - start)].append(lag)
    return [(second, percentile(lags, 50), percentile(lags, 99)) for second, lags in sorted(buckets.items())]


def write_lag_plot(stage: str, series: list[tuple[float, float]], title: str, target_ms: float | None = None,
                   path: Path | None = None) -> Path:
    """``series``: (time in epoch seconds, lag in ms). Every sample as a dot, p50 and p99 per second as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = path or RESULTS / f"{stage}-lag.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    start = min((at for at, _ in series), default=0.0)
    seconds = per_second(series)
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=100)
    ax.scatter([at - start for at, _ in series], [max(lag, 0.1) for _, lag in series], s=2, alpha=0.2,
               color="tab:gray", label=f"each change ({len(series):,})")
    ax.plot([s for s, _, _ in seconds], [p50 for _, p50, _ in seconds], color="tab:blue", label="p50 per second")
    ax.plot([s for s, _, _ in seconds], [p99 for _, _, p99 in seconds], color="tab:orange", label="p99 per second")
    if target_ms is not None:
        ax.axhline(target_ms, color="tab:red", linestyle="--", linewidth=1, label=f"target {target_ms:,.0f} ms")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the first change of the run")
    ax.set_ylabel("lag (ms, log scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    print(f"  lag plot: {out}")
    return out
