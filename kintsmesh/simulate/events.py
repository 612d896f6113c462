"""Live activity in the city: births, marriages, moves, rentals, enterprises, contributions, deaths.

Each event changes the city's truth and yields the department writes it causes,
grouped per department: each group is one transaction in that department's
database, as its own system would commit it.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from kintsmesh.settings import Settings
from kintsmesh.simulate.city import City, CityBuilder, Marriage, Person, age
from kintsmesh.simulate.departments import DepartmentViews, Row, shift_month
from kintsmesh.simulate.writer import Change, DepartmentWriter, Op


EVENT_WEIGHTS: dict[str, int] = {
    "contribution": 30, "correction": 10, "rental_started": 8, "move": 6, "birth": 6, "marriage": 5,
    "rental_ended": 5, "enrolment": 5, "enterprise_opened": 4, "death": 3, "rental_purged": 3,
    "divorce": 2, "enterprise_closed": 2,
}


@dataclass
class LiveStats:
    changes: int = 0
    transactions: int = 0
    elapsed_s: float = 0.0
    by_event: Counter[str] = field(default_factory=Counter)


RESERVE = 500   # events a live run announces (reserve) before drawing them


class LiveCity:
    def __init__(self, city: City, seed: int, dirty_rate: float) -> None:
        city.live_runs += 1
        self.city = city
        self.rng = random.Random(f"{seed}-live-{city.live_runs}")
        self.builder = CityBuilder(city, self.rng)
        self.views = DepartmentViews(city, self.rng, dirty_rate)
        self.people = list(city.people)
        self.enterprises = list(city.enterprises)
        self.rentals = list(city.rentals)

    # -- choosing who an event happens to -----------------------------------
    def pick(self, ok: Callable[[Person], bool], tries: int = 40) -> Person | None:
        for _ in range(tries):
            person = self.city.people[self.rng.choice(self.people)]
            if person.death is None and ok(person):
                return person
        return None

    def _age(self, p: Person) -> int:
        return age(p.birth, self.city.today)

    def _police_person(self, p: Person) -> list[tuple[str, list[Change]]]:
        return [("police", [(self.views.registered_person(p), "u")])] if p.hukou else []

    # -- events: each returns [(department, [(row, op), ...]), ...] -----------
    def birth(self) -> list[tuple[str, list[Change]]]:
        mother = self.pick(lambda p: p.gender == "2" and p.spouse is not None and 22 <= self._age(p) <= 42)
        if mother is None or mother.spouse is None:
            return []
        father = self.city.people[mother.spouse]
        household = self.city.households[mother.household]
        child = self.builder.add_child(household, father, mother, self.city.today - timedelta(days=self.rng.randint(0, 6)))
        self.people.append(child.ric)
        writes: list[tuple[str, list[Change]]] = [("health", [(self.views.birth_certificate(child), "c")])]
        if child.hukou:
            writes.append(("police", [(self.views.registered_person(child), "c")]))
        return writes

    def _register(self, marriage: Marriage, husband: Person, wife: Person) -> list[tuple[str, list[Change]]]:
        return [("civil_affairs", [(self.views.marriage(marriage), "c")]),
                *self._police_person(husband), *self._police_person(wife)]

    def marriage(self) -> list[tuple[str, list[Change]]]:
        man = self.pick(lambda p: p.gender == "1" and p.marital != "20" and 22 <= self._age(p) <= 50)
        woman = self.pick(lambda p: p.gender == "2" and p.marital != "20" and 20 <= self._age(p) <= 48)
        if man is None or woman is None:
            return []
        return self._register(self.builder.marry(man, woman, self.city.today), man, woman)

    def divorce(self) -> list[tuple[str, list[Change]]]:
        husband = self.pick(lambda p: p.gender == "1" and p.spouse is not None)
        if husband is None or husband.spouse is None:
            return []
        wife = self.city.people[husband.spouse]
        return self._register(self.builder.divorce(husband, wife, self.city.today), husband, wife)

    def move(self) -> list[tuple[str, list[Change]]]:
        head = self.pick(lambda p: p.relation == "01" and p.hukou)
        if head is None:
            return []
        household = self.city.households[head.household]
        house = self.builder.new_house()
        household.house = house.code
        changes: list[Change] = [(self.views.household(household), "u")]
        for ric in household.members:
            member = self.city.people[ric]
            member.house = house.code
            if member.death is None and member.hukou:   # a member without hukou has no registry row to update
                changes.append((self.views.registered_person(member), "u"))
                self.city.moves.append((self.city.today, ric))
        return [("housing", [(self.views.house(house), "c")]), ("police", changes)]

    def rental_started(self) -> list[tuple[str, list[Change]]]:
        lessee = self.pick(lambda p: not p.hukou and self._age(p) >= 20)
        lessor = self.pick(lambda p: p.hukou and self._age(p) >= 25)
        if lessee is None or lessor is None:
            return []
        house = self.builder.new_house()
        rental_no = f"ZL{self.city.next_id('rental'):010d}"
        self.city.rentals[rental_no] = (house.code, lessor.ric, lessee.ric, self.city.today, None)
        self.rentals.append(rental_no)
        return [("housing", [(self.views.house(house), "c"), (self.views.rental(rental_no), "c")])]

    def _open_rental(self, ended: bool) -> str | None:
        for _ in range(20):
            rental_no = self.rng.choice(self.rentals)
            if rental_no in self.city.rentals and (self.city.rentals[rental_no][4] is not None) == ended:
                return rental_no
        return None

    def rental_ended(self) -> list[tuple[str, list[Change]]]:
        rental_no = self._open_rental(ended=False)
        if rental_no is None:
            return []
        house, lessor, lessee, start, _ = self.city.rentals[rental_no]
        self.city.rentals[rental_no] = (house, lessor, lessee, start, self.city.today)
        return [("housing", [(self.views.rental(rental_no), "u")])]

    def rental_purged(self) -> list[tuple[str, list[Change]]]:
        rental_no = self._open_rental(ended=True)
        if rental_no is None:
            return []
        row = self.views.rental(rental_no)
        del self.city.rentals[rental_no]
        return [("housing", [(row, "d")])]

    def enterprise_opened(self) -> list[tuple[str, list[Change]]]:
        founder = self.pick(lambda p: 22 <= self._age(p) < 65)
        if founder is None:
            return []
        enterprise = self.builder.new_enterprise(founder.ric, self.city.today)
        self.enterprises.append(enterprise.uscc)
        return [("market", [(self.views.enterprise(enterprise), "c")])]

    def enterprise_closed(self) -> list[tuple[str, list[Change]]]:
        enterprise = self.city.enterprises[self.rng.choice(self.enterprises)]
        if enterprise.status != "存续":
            return []
        enterprise.status, enterprise.closed = "注销", self.city.today
        return [("market", [(self.views.enterprise(enterprise), "u")])]

    def contribution(self) -> list[tuple[str, list[Change]]]:
        person = self.pick(lambda p: p.insured_no is not None and p.employer is not None and p.last_paid_month is not None)
        if person is None or person.last_paid_month is None:
            return []
        person.last_paid_month = shift_month(person.last_paid_month, 1)
        rows = self.views.contributions(person, person.last_paid_month)
        return [("hrss", [(row, "c") for row in rows])]

    def death(self) -> list[tuple[str, list[Change]]]:
        person = self.pick(lambda p: self._age(p) >= 70)
        if person is None:
            return []
        person.death = self.city.today
        writes = self._police_person(person)
        if person.insured_no:
            writes.append(("hrss", [(self.views.insured_person(person), "u")]))
        return writes

    def enrolment(self) -> list[tuple[str, list[Change]]]:
        child = self.pick(lambda p: p.student_no is None and 5 <= self._age(p) <= 6)
        if child is None:
            return []
        return [("education", [(self.views.student(child), "c")])]

    def correction(self) -> list[tuple[str, list[Change]]]:
        """A clerk re-keys a person's registry row (sometimes fixing dirt, sometimes adding some)."""
        person = self.pick(lambda p: p.hukou)
        return self._police_person(person) if person else []

    # -- running --------------------------------------------------------------
    def events(self) -> Iterator[tuple[str, list[tuple[str, list[Change]]]]]:
        kinds, weights = zip(*EVENT_WEIGHTS.items())
        while True:
            kind = self.rng.choices(kinds, weights=weights)[0]
            writes = getattr(self, kind)()
            if writes:
                yield kind, writes

    def run(self, settings: Settings, *, rate: float, duration_s: float, on_row: Callable[[Row, Op], object],
            redo: int = 0, reserve: Callable[[int], object] | None = None) -> LiveStats:
        """Draw and write changes at ``rate`` for ``duration_s``. ``redo``: first draw that many events again, as
        fast as they go, an insert overwriting the row of its key (a killed run's, which drew them from the same
        state and seed). ``reserve(n)`` is called before the n-th event is drawn, every RESERVE events: what a
        later run must redo if this one is killed."""
        writer = DepartmentWriter(settings, replay=redo > 0)
        stats = LiveStats()
        ok = False
        drawn = 0
        try:
            events = self.events()

            def draw() -> tuple[str, list[tuple[str, list[Change]]]]:
                nonlocal drawn
                if reserve is not None and drawn % RESERVE == 0:
                    reserve(drawn + RESERVE)
                drawn += 1
                return next(events)

            for _ in range(redo):
                for department, changes in draw()[1]:
                    writer.submit(department, changes)
                    for row, op in changes:
                        on_row(row, op)
            started = last_report = time.monotonic()
            # the deadline is checked before the next event happens: an event changes the city's truth
            # as it is drawn, so one drawn and then not written would be a fact no department holds
            while (now := time.monotonic()) - started < duration_s:
                due = started + stats.changes / rate
                if due > now:
                    time.sleep(due - now)
                kind, writes = draw()
                for department, changes in writes:
                    writer.submit(department, changes)
                    stats.transactions += 1
                    stats.changes += len(changes)
                    for row, op in changes:
                        on_row(row, op)
                stats.by_event[kind] += 1
                if time.monotonic() - last_report >= 10:
                    last_report = time.monotonic()
                    print(f"  live: {stats.changes:,} changes in {last_report - started:.0f} s", flush=True)
            ok = True
        finally:
            writer.close(flush=ok)
        stats.elapsed_s = time.monotonic() - started
        return stats
