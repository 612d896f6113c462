"""The synthetic city: the *truth* the department databases each see a part of.

Pure and deterministic for a seed: people in households (parents, children of
every age, grandparents), houses, enterprises, marriages. No I/O here; the
department views in ``departments.py`` turn this truth into each department's rows.
"""

from __future__ import annotations

import json
import random
from dataclasses import MISSING, dataclass, field, fields
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from faker import Faker
from stdnum.cn import ric as ric_std
from stdnum.cn import uscc as uscc_std

from kintsmesh.errors import KintsmeshError


@cache
def geography() -> dict[str, Any]:
    return json.loads((Path(__file__).with_name("shenzhen.json")).read_text())


@dataclass
class Address:
    district: str
    street: str
    community: str
    road: str
    number: int
    estate: str
    building: int
    room: int

    def text(self, with_prefix: bool) -> str:
        prefix = geography()["province_city_prefix"] if with_prefix else ""
        return (
            f"{prefix}{self.district}{self.street}{self.community}{self.road}{self.number}号"
            f"{self.estate}{self.building}栋{self.room}"
        )


@dataclass
class House:
    code: str            # 房屋编码 (the city's house code)
    building_code: str   # 楼栋编码
    address: Address
    area: float
    use: str


@dataclass
class Person:
    ric: str                 # the true 18-character resident identity number
    name: str
    gender: str              # GB/T 2261.1: '1' male, '2' female
    ethnicity: str           # GB/T 3304
    birth: date
    household: str
    relation: str            # to the household head: 01 户主, 10 配偶, 20 子女, 50 父母
    hukou: bool              # registered in Shenzhen (else holds a residence permit)
    house: str
    marital: str = "10"      # GB/T 2261.2: 10 unmarried, 20 married, 40 divorced
    spouse: str | None = None
    father: str | None = None
    mother: str | None = None
    death: date | None = None
    employer: str | None = None   # USCC
    insured_no: str | None = None  # 个人编号 at the social-insurance bureau
    last_paid_month: str | None = None
    student_no: str | None = None
    # this person's row keys in department systems (internal numbers, stable across updates)
    keys: dict[str, str] = field(default_factory=dict)


@dataclass
class Household:
    hh: str
    head: str
    house: str
    members: list[str]
    since: date
    renting: bool


@dataclass
class Enterprise:
    reg_no: str      # 15-digit 注册号
    uscc: str
    name: str
    kind: str
    legal_rep: str
    capital: float
    established: date
    status: str = "存续"
    closed: date | None = None
    address: Address | None = None


@dataclass
class Marriage:
    reg_id: int
    kind: str        # 结婚 / 离婚
    husband: str
    wife: str
    on: date
    office: str
    cert_no: str


RIC_CLASSES = 10   # resident ID numbers: the sequence's hundreds digit is the city's class


def ric_class(seed: int) -> int:
    return seed % RIC_CLASSES


ID_SPACE = 10**7  # internal numbers per seed namespace: plenty for a city of a few million


@dataclass
class City:
    seed: int
    today: date
    people: dict[str, Person] = field(default_factory=dict)
    households: dict[str, Household] = field(default_factory=dict)
    houses: dict[str, House] = field(default_factory=dict)
    enterprises: dict[str, Enterprise] = field(default_factory=dict)
    marriages: list[Marriage] = field(default_factory=list)
    rentals: dict[str, tuple[str, str, str, date, date | None]] = field(default_factory=dict)  # babh -> house, lessor, lessee, from, to
    moves: list[tuple[date, str]] = field(default_factory=list)   # (day, RIC): a registered address changed
    counters: dict[str, int] = field(default_factory=dict)
    live_runs: int = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A city pickled by an older version lacks the fields added since: they start empty."""
        self.__dict__.update(state)
        for f in fields(self):
            if f.name not in state and f.default_factory is not MISSING:
                setattr(self, f.name, f.default_factory())

    def next_id(self, kind: str) -> int:
        """A department's next internal number; cities of different seeds (mod 100) never share one."""
        self.counters[kind] = self.counters.get(kind, 0) + 1
        return (self.seed % 100) * ID_SPACE + self.counters[kind]


NAME_POOL = 4000


class CityBuilder:
    """Draws people, houses and enterprises; shared by the initial load and live changes."""

    def __init__(self, city: City, rng: random.Random) -> None:
        self.city = city
        self.rng = rng
        faker = Faker("zh_CN")
        faker.seed_instance(rng.randrange(2**32))
        # Faker's weighted draws are slow per call: draw pools once (the frequencies carry over)
        self.surnames = [faker.last_name() for _ in range(NAME_POOL)]
        self.male_names = [faker.first_name_male() for _ in range(NAME_POOL)]
        self.female_names = [faker.first_name_female() for _ in range(NAME_POOL)]
        self.geo = geography()

    # -- identifiers -------------------------------------------------------
    def new_ric(self, birth: date, gender: str, local: bool) -> str:
        areas = [d["code"] for d in self.geo["districts"].values()] if local else self.geo["migrant_birthplaces"]
        odd = 1 if gender == "1" else 0

        def ric(area: str, seq: int) -> str:
            body = f"{area}{birth:%Y%m%d}{seq:03d}"
            return body + ric_std.calc_check_digit(body + "0")

        for _ in range(200):
            # the sequence's hundreds digit belongs to the seed (mod 10): cities of different classes, such
            # as the demo's and a benchmark's sharing the department databases, never draw the same number
            number = ric(self.rng.choice(areas), ric_class(self.city.seed) * 100 + self.rng.randrange(0, 50) * 2 + odd)
            if number not in self.city.people:
                return number
        # the seed's numbers of that birth date are (nearly) used up (a city live for long keeps its day):
        # any free one of the day
        for area in self.rng.sample(areas, len(areas)):
            for seq in range(odd, 1000, 2):
                if (number := ric(area, seq)) not in self.city.people:
                    return number
        raise KintsmeshError(f"simulate: every resident ID number of people born on {birth} is taken")

    def new_uscc(self) -> str:
        while True:
            org = "".join(self.rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
            body = f"91440300{org}"
            org_code = body[8:16]
            # GB 11714 organisation code check character (9th char of the org code)
            weights = (3, 7, 9, 10, 5, 8, 4, 2)
            alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            total = sum(alphabet.index(c) * w for c, w in zip(org_code, weights))
            check = 11 - total % 11
            org_check = "X" if check == 10 else "0" if check == 11 else str(check)
            partial = body + org_check
            number = partial + uscc_std.calc_check_digit(partial + "0")
            if number not in self.city.enterprises:
                return number

    # -- names and places ---------------------------------------------------
    def given_name(self, gender: str) -> str:
        return self.rng.choice(self.male_names if gender == "1" else self.female_names)

    def surname(self) -> str:
        return self.rng.choice(self.surnames)

    def minority_name(self) -> str:
        return f"{self.rng.choice(self.geo['minority_given_names'])}·{self.rng.choice(self.geo['minority_family_names'])}"

    def address(self) -> Address:
        district = self.rng.choice(list(self.geo["districts"]))
        streets = self.geo["districts"][district]["streets"]
        street = self.rng.choice(list(streets))
        return Address(
            district=district,
            street=street,
            community=self.rng.choice(streets[street]),
            road=self.rng.choice(self.geo["roads"]),
            number=self.rng.randint(1, 3000),
            estate=self.surname() + self.rng.choice(self.geo["estates"]),
            building=self.rng.randint(1, 30),
            room=self.rng.randint(1, 33) * 100 + self.rng.randint(1, 8),
        )

    def new_house(self) -> House:
        addr = self.address()
        code_no = self.city.next_id("house")
        district_code = self.geo["districts"][addr.district]["code"]
        building = f"{district_code}{code_no // 40:08d}"
        house = House(
            code=f"{building}{code_no % 40:02d}{addr.room:04d}",
            building_code=building,
            address=addr,
            area=round(self.rng.uniform(35, 180), 2),
            use=self.rng.choices(["住宅", "商业", "办公"], weights=[92, 5, 3])[0],
        )
        self.city.houses[house.code] = house
        return house

    def birth_between(self, oldest: int, youngest: int) -> date:
        start = self.city.today - timedelta(days=int(oldest * 365.25))
        end = self.city.today - timedelta(days=int(youngest * 365.25))
        return start + timedelta(days=self.rng.randrange(max(1, (end - start).days)))

    def new_person(self, birth: date, gender: str, household: Household, relation: str, hukou: bool,
                   surname: str | None = None) -> Person:
        ethnicity = "01" if self.rng.random() < 0.92 else self.rng.choice(["02", "03", "04", "05", "06", "08", "15"])
        if ethnicity == "05" and surname is None:
            name = self.minority_name()
        else:
            name = (surname or self.surname()) + self.given_name(gender)
        person = Person(
            ric=self.new_ric(birth, gender, local=hukou),
            name=name,
            gender=gender,
            ethnicity=ethnicity,
            birth=birth,
            household=household.hh,
            relation=relation,
            hukou=hukou,
            house=household.house,
        )
        self.city.people[person.ric] = person
        household.members.append(person.ric)
        return person

    def new_household(self, hukou: bool) -> Household:
        house = self.new_house()
        number = self.city.next_id("household")
        hh = Household(
            hh=f"440{number:09d}",
            head="",
            house=house.code,
            members=[],
            since=self.birth_between(25, 0),
            renting=not hukou or self.rng.random() < 0.15,
        )
        self.city.households[hh.hh] = hh
        return hh

    def register(self, kind: str, husband: Person, wife: Person, on: date) -> Marriage:
        """A marriage (结婚) or divorce (离婚) registration at a civil-affairs office."""
        reg_id = self.city.next_id("marriage")
        marriage = Marriage(
            reg_id=reg_id,
            kind=kind,
            husband=husband.ric,
            wife=wife.ric,
            on=on,
            office=self.rng.choice(self.geo["registration_offices"]),
            # numbered from the registration: unique, also across cities (a random number collided)
            cert_no=f"{'J' if kind == '结婚' else 'L'}440300-{on.year}-{reg_id:09d}",
        )
        self.city.marriages.append(marriage)
        return marriage

    def marry(self, husband: Person, wife: Person, on: date) -> Marriage:
        husband.marital = wife.marital = "20"
        husband.spouse, wife.spouse = wife.ric, husband.ric
        return self.register("结婚", husband, wife, on)

    def divorce(self, husband: Person, wife: Person, on: date) -> Marriage:
        husband.marital = wife.marital = "40"
        husband.spouse = wife.spouse = None
        return self.register("离婚", husband, wife, on)

    def add_child(self, household: Household, father: Person | None, mother: Person, birth: date) -> Person:
        gender = self.rng.choice("12")
        surname = (father or mother).name[0] if (father or mother).ethnicity != "05" else None
        child = self.new_person(birth, gender, household, "20", hukou=mother.hukou, surname=surname)
        child.father = father.ric if father else None
        child.mother = mother.ric
        return child

    def new_enterprise(self, legal_rep: str, established: date) -> Enterprise:
        number = self.city.next_id("enterprise")
        industry = self.rng.choice(self.geo["industries"])
        enterprise = Enterprise(
            reg_no=f"440301{number:09d}",
            uscc=self.new_uscc(),
            name=f"深圳市{self.surname()}{self.given_name(self.rng.choice('12'))}{industry}有限公司",
            kind=self.rng.choice(self.geo["enterprise_types"]),
            legal_rep=legal_rep,
            capital=float(self.rng.choice([10, 50, 100, 200, 500, 1000, 5000])),
            established=established,
            address=self.address(),
        )
        self.city.enterprises[enterprise.uscc] = enterprise
        return enterprise


def build_city(seed: int, population: int, today: date) -> City:
    """A city of about ``population`` people, families first, then enterprises and jobs."""
    city = City(seed=seed, today=today)
    rng = random.Random(seed)
    b = CityBuilder(city, rng)
    while len(city.people) < population:
        shape = rng.random()
        hukou = rng.random() < 0.7
        hh = b.new_household(hukou)
        if shape < 0.15:  # a single adult, some divorced
            head = b.new_person(b.birth_between(60, 22), rng.choice("12"), hh, "01", hukou)
            if rng.random() < 0.25 and head.birth < today - timedelta(days=30 * 365):
                head.marital = "40"
        else:
            husband = b.new_person(b.birth_between(58, 24), "1", hh, "01", hukou)
            wife_birth = husband.birth + timedelta(days=rng.randint(-5 * 365, 3 * 365))
            wife = b.new_person(min(wife_birth, today - timedelta(days=22 * 365)), "2", hh, "10", hukou)
            youngest = max(husband.birth, wife.birth)
            married_on = youngest + timedelta(days=rng.randint(22 * 365, 30 * 365))
            b.marry(husband, wife, min(married_on, today - timedelta(days=30)))
            head = husband
            hh.head = head.ric
            if shape < 0.85:  # children of every age, 0 to 17
                for _ in range(rng.choices([1, 2, 3], weights=[50, 40, 10])[0]):
                    born = b.birth_between(17, 0)
                    if born > married_on:
                        b.add_child(hh, husband, wife, born)
            if rng.random() < 0.12:  # a grandparent lives with them
                b.new_person(b.birth_between(88, 60), rng.choice("12"), hh, "50", hukou)
        hh.head = head.ric
    # a few elderly have died already (the registry keeps them, flagged)
    for person in city.people.values():
        if person.birth < today - timedelta(days=75 * 365) and rng.random() < 0.05:
            person.death = today - timedelta(days=rng.randint(30, 3 * 365))
    adults = [p for p in city.people.values() if 22 <= age(p.birth, today) < 60 and p.death is None]
    for _ in range(max(1, len(city.people) // 60)):
        b.new_enterprise(rng.choice(adults).ric, b.birth_between(25, 0))
    enterprises = list(city.enterprises.values())
    for enterprise in enterprises:
        if rng.random() < 0.08:
            enterprise.status = "注销"
            enterprise.closed = enterprise.established + timedelta(days=rng.randint(200, 3000))
            if enterprise.closed >= today:
                enterprise.status, enterprise.closed = "存续", None
    open_ones = [e for e in enterprises if e.status == "存续"]
    for person in adults:
        if rng.random() < 0.7:
            person.employer = rng.choice(open_ones).uscc
            person.insured_no = f"SB{city.next_id('insured'):010d}"
    for hh in city.households.values():
        if hh.renting:
            owner = rng.choice(adults)
            rental_no = f"ZL{city.next_id('rental'):010d}"
            city.rentals[rental_no] = (hh.house, owner.ric, hh.head, hh.since, None)
    return city


def age(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
