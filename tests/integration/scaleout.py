"""Scale-out tests' helpers: a second stage process beside the stack's, and what its metrics count."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from kintsmesh.settings import Settings


def metric_total(port: int, family: str, sample: str = "_total") -> float:
    """The sum of a family's ``sample`` samples on a process's /metrics (a counter's ``_total``, a
    histogram's ``_count`` or ``_sum``)."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text) if f.name == family
               for s in f.samples if s.name.endswith(sample))


@contextmanager
def second_process(settings: Settings, tmp_path: Path, command: list[str], env: dict[str, str], port: int,
                   family: str) -> Iterator[subprocess.Popen[bytes]]:
    """``kintsmesh <command>`` started beside the stack's process of the same stage, yielded once its metrics
    on ``port`` answer; it must still run when the block ends, and is stopped after it (its log in tmp_path)."""
    log_path = tmp_path / f"second-{'-'.join(command[:2])}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "kintsmesh.cli", *command], stdout=log,
                                   stderr=subprocess.STDOUT,
                                   env={**os.environ, "KINTSMESH_STACK_DIR": str(settings.stack_dir), **env})
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                metric_total(port, family)
                break
            except requests.RequestException:
                assert process.poll() is None, log_path.read_text()[-2000:]
                assert time.monotonic() < deadline, f"no metrics on :{port} after 90 s: {log_path}"
                time.sleep(0.5)
        yield process
        assert process.poll() is None, log_path.read_text()[-2000:]
    finally:
        process.terminate()
        process.wait(60)
