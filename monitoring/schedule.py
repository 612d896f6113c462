"""When each T+1 department's nightly extract is due, and whether it is overdue (pure).

Declared in ``monitoring/batches.yaml``: a department's extract for business day D must be
loaded by ``due`` (local time) on D+1.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from kintsmesh.settings import CITY_TZ_NAME

SCHEDULE_FILE = Path(__file__).resolve().parent / "batches.yaml"


@dataclass(frozen=True)
class BatchSchedule:
    department: str
    due: time
    zone: ZoneInfo

    def expected_date(self, now: datetime) -> date:
        """The newest business day whose extract should be loaded at ``now``."""
        local = now.astimezone(self.zone)
        yesterday = local.date() - timedelta(days=1)
        return yesterday if local.time() >= self.due else yesterday - timedelta(days=1)

    def overdue(self, last_loaded: date | None, now: datetime) -> bool:
        return last_loaded is None or last_loaded < self.expected_date(now)


def load_schedules(path: Path = SCHEDULE_FILE) -> list[BatchSchedule]:
    spec = yaml.safe_load(path.read_text()) or {}
    zone = ZoneInfo(spec.get("timezone", CITY_TZ_NAME))
    return [BatchSchedule(department, time.fromisoformat(str(entry["due"])), zone)
            for department, entry in (spec.get("departments") or {}).items()]
