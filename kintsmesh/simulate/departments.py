"""Each department's view of the city: rows in that department's own schema and habits.

Habits are always on (police writes 'YYYYMMDD', health writes '男/女', market
uses full-width brackets ...). Dirt is drawn at ``dirty_rate`` per value: typos,
missing or bad ID numbers, legacy 15-digit IDs, full-width digits, stray spaces.
Every row comes with its ground truth: which real people / entities / houses it
is about, by role.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from kintsmesh.settings import CITY_TZ
from kintsmesh.simulate.city import City, Enterprise, House, Household, Marriage, Person, age, geography

FULL_WIDTH = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")
MISSING_MARKERS = ("", None, "无", "-", "NULL")
SIMILAR = {"明": "名", "华": "化", "伟": "玮", "丽": "莉", "军": "君", "静": "婧", "敏": "闽", "磊": "垒", "强": "墙", "芳": "方"}
MIDDLE_DOTS = ("·", "•", "．", "・", "‧")


@dataclass(frozen=True)
class Row:
    database: str
    table: str
    values: dict[str, Any]
    truth: dict[str, str]   # role -> canonical id (RIC, USCC, house code, household number)

    @property
    def key(self) -> str:
        return "|".join(str(self.values[c]) for c in PRIMARY_KEYS[(self.database, self.table)])


PRIMARY_KEYS: dict[tuple[str, str], tuple[str, ...]] = {
    ("police", "hj_hu"): ("hh",),
    ("police", "rk_jbxx"): ("rkbh",),
    ("police", "jzz"): ("jzzbh",),
    ("civil_affairs", "hy_djxx"): ("djid",),
    ("health", "cszm"): ("cszmbh",),
    ("hrss", "sb_cbry"): ("grbh",),
    ("hrss", "sb_jfmx"): ("grbh", "jfny", "xzdm"),
    ("housing", "fw_jbxx"): ("fwbm",),
    ("housing", "zl_ba"): ("babh",),
    ("market", "qy_djxx"): ("zch",),
    ("education", "xs_xj"): ("xjh",),
}


def legacy_id(ric: str) -> str:
    """The 15-digit number a person born before 2000 may still be recorded under."""
    return ric[:6] + ric[8:17]


class Dirt:
    """Draws the dirty values a department's clerks and systems produce."""

    def __init__(self, rng: random.Random, rate: float) -> None:
        self.rng = rng
        self.rate = rate

    def hit(self, scale: float = 1.0) -> bool:
        return self.rng.random() < self.rate * scale

    def id_number(self, ric: str, missing_ok: bool = True) -> str | None:
        if not self.hit():
            return ric
        choices = ["bad_check", "full_width", "spaces", "transposed"]
        if missing_ok:
            choices.append("missing")
        if ric[6:8] == "19":
            choices += ["legacy", "legacy"]
        if ric.endswith("X"):
            choices.append("lower_x")
        kind = self.rng.choice(choices)
        if kind == "missing":
            return self.rng.choice(MISSING_MARKERS)
        if kind == "bad_check":
            return ric[:17] + self.rng.choice([c for c in "0123456789X" if c != ric[17]])
        if kind == "full_width":
            return ric.translate(FULL_WIDTH)
        if kind == "spaces":
            return f" {ric}  " if self.rng.random() < 0.5 else ric + "   "
        if kind == "transposed":
            i = self.rng.randrange(6, 16)
            return ric[:i] + ric[i + 1] + ric[i] + ric[i + 2:]
        if kind == "lower_x":
            return ric[:17] + "x"
        return legacy_id(ric)

    def name(self, name: str) -> str:
        if "·" in name and self.rng.random() < 0.5:
            name = name.replace("·", self.rng.choice(MIDDLE_DOTS))
        if not self.hit():
            return name
        kind = self.rng.choice(["typo", "spaces", "full_space"])
        if kind == "typo":
            for i, ch in enumerate(name):
                if ch in SIMILAR:
                    return name[:i] + SIMILAR[ch] + name[i + 1:]
            return name + " "
        if kind == "full_space":
            return name[:1] + "\u3000" + name[1:]
        return name + "  "

    def date_text(self, d: date, fmt: str) -> str:
        """A date as a clerk types it; now and then one that cannot exist (31 Feb, month 13)."""
        if self.hit(0.2):
            impossible = date(d.year, 2, 1).strftime(fmt).replace("-02-01", "-02-31").replace("0201", "0231")
            return impossible.replace("/02/01", "/02/31")
        return d.strftime(fmt)

    def maybe_missing(self, value: Any, scale: float = 1.0) -> Any:
        return self.rng.choice(MISSING_MARKERS) if self.hit(scale) else value


def yyyymmdd(d: date | None) -> str | None:
    return None if d is None else f"{d:%Y%m%d}"


class DepartmentViews:
    """Rows each department holds about the city, for the initial load and for live changes."""

    def __init__(self, city: City, rng: random.Random, dirty_rate: float) -> None:
        self.city = city
        self.rng = rng
        self.dirt = Dirt(rng, dirty_rate)
        self.geo = geography()

    def person(self, ric: str) -> Person:
        return self.city.people[ric]

    def source_key(self, p: Person, kind: str, prefix: str, width: int) -> str:
        """A department's internal number for this person, drawn once."""
        if kind not in p.keys:
            p.keys[kind] = f"{prefix}{self.city.next_id(kind):0{width}d}"
        return p.keys[kind]

    def address(self, house_code: str, with_prefix: bool) -> str:
        return self.city.houses[house_code].address.text(with_prefix)

    # -- police ------------------------------------------------------------
    def household(self, hh: Household) -> Row:
        head = self.person(hh.head)
        return Row("police", "hj_hu", {
            "hh": hh.hh, "hzxm": self.dirt.name(head.name), "hzsfzh": self.dirt.id_number(head.ric),
            "hjdz": self.address(hh.house, True), "lhrq": yyyymmdd(hh.since),
        }, {"household": hh.hh, "head": head.ric, "house": hh.house})

    def registered_person(self, p: Person) -> Row:
        return Row("police", "rk_jbxx", {
            "rkbh": self.source_key(p, "rkbh", "RK4403", 12), "gmsfhm": self.dirt.id_number(p.ric), "xm": self.dirt.name(p.name),
            "xb": p.gender, "mz": p.ethnicity, "csrq": self.dirt.date_text(p.birth, "%Y%m%d"), "hh": p.household,
            "yhzgx": p.relation, "hjdz": self.address(p.house, True), "hyzk": p.marital,
            "swrq": yyyymmdd(p.death), "zxbz": "1" if p.death else "0",
        }, {"person": p.ric, "household": p.household, "house": p.house})

    def residence_permit(self, p: Person) -> Row:
        issued = max(p.birth + timedelta(days=16 * 365), self.city.households[p.household].since)
        return Row("police", "jzz", {
            "jzzbh": self.source_key(p, "jzzbh", "JZ440300", 10), "sfzh": self.dirt.id_number(p.ric), "xm": self.dirt.name(p.name),
            "xb": p.gender, "jzdz": self.address(p.house, self.rng.random() < 0.5),
            "qfrq": yyyymmdd(issued), "yxqz": yyyymmdd(issued + timedelta(days=5 * 365)),
        }, {"person": p.ric, "house": p.house})

    # -- civil affairs -----------------------------------------------------
    def marriage(self, m: Marriage) -> Row:
        husband, wife = self.person(m.husband), self.person(m.wife)
        return Row("civil_affairs", "hy_djxx", {
            "djid": m.reg_id, "djlx": m.kind, "nf_xm": self.dirt.name(husband.name),
            "nf_sfzh": self.dirt.id_number(husband.ric), "nf_csrq": husband.birth,
            "nvf_xm": self.dirt.name(wife.name), "nvf_sfzh": self.dirt.id_number(wife.ric), "nvf_csrq": wife.birth,
            "djrq": m.on, "djjg": m.office, "zsbh": m.cert_no,
        }, {"husband": husband.ric, "wife": wife.ric})

    # -- health ------------------------------------------------------------
    def birth_certificate(self, child: Person) -> Row:
        mother = self.person(child.mother) if child.mother else None
        father = self.person(child.father) if child.father else None
        born = datetime.combine(child.birth, time(self.rng.randrange(24), self.rng.randrange(60)), CITY_TZ)
        truth = {"child": child.ric, "house": child.house}
        if mother:
            truth["mother"] = mother.ric
        if father:
            truth["father"] = father.ric
        return Row("health", "cszm", {
            "cszmbh": self.source_key(child, "cszmbh", chr(ord("K") + child.birth.year % 10), 9),
            "xsexm": "" if self.dirt.hit(1.5) else self.dirt.name(child.name),
            "xsexb": "男" if child.gender == "1" else "女",
            "cssj": born, "csyz": self.rng.randint(36, 41), "cstz": self.rng.randint(2500, 4200),
            "jsjg": self.rng.choice(self.geo["hospitals"]),
            "mqxm": self.dirt.name(mother.name) if mother else None,
            "mqsfzh": self.dirt.id_number(mother.ric) if mother else None,
            "fqxm": self.dirt.name(father.name) if father else None,
            "fqsfzh": (self.dirt.maybe_missing(self.dirt.id_number(father.ric), 2.0) if father else None),
            "jtzz": self.address(child.house, self.rng.random() < 0.4),
            "qfrq": datetime.combine(child.birth + timedelta(days=self.rng.randint(1, 20)), time(10)),
        }, truth)

    # -- human resources & social security ----------------------------------
    def insured_person(self, p: Person) -> Row:
        assert p.insured_no is not None
        joined = max(p.birth + timedelta(days=20 * 365), date(2005, 1, 1))
        return Row("hrss", "sb_cbry", {
            "grbh": p.insured_no, "sfzhm": self.dirt.id_number(p.ric, missing_ok=False),
            "xm": self.dirt.name(p.name), "xb": "M" if p.gender == "1" else "F", "csny": p.birth,
            "cbrq": joined, "cbzt": "1" if p.death is None else "3",
        }, {"person": p.ric})

    def contributions(self, p: Person, month: str) -> list[Row]:
        assert p.insured_no is not None and p.employer is not None
        employer: Enterprise = self.city.enterprises[p.employer]
        base = float(self.rng.choice([2360, 3500, 5000, 8000, 12000, 25000]))
        rows = []
        for kind, own, unit in (("110", 0.08, 0.15), ("310", 0.02, 0.06)):
            rows.append(Row("hrss", "sb_jfmx", {
                "grbh": p.insured_no, "jfny": month, "xzdm": kind, "dwbh": employer.reg_no[-10:],
                "dwmc": employer.name, "tyshxydm": self.dirt.maybe_missing(employer.uscc, 0.5),
                "jfjs": base, "grjfe": round(base * own, 2), "dwjfe": round(base * unit, 2), "dzbz": "1",
            }, {"person": p.ric, "employer": employer.uscc}))
        return rows

    # -- housing -----------------------------------------------------------
    def house(self, h: House) -> Row:
        return Row("housing", "fw_jbxx", {
            "fwbm": h.code, "ldbm": h.building_code, "zl": h.address.text(False), "jzmj": h.area,
            "fwyt": h.use, "qszt": "正常",
        }, {"house": h.code})

    def rental(self, rental_no: str) -> Row:
        house, lessor, lessee, start, end = self.city.rentals[rental_no]
        lessor_p, lessee_p = self.person(lessor), self.person(lessee)
        return Row("housing", "zl_ba", {
            "babh": rental_no, "fwbm": house, "czrxm": self.dirt.name(lessor_p.name),
            "czrzjhm": self.dirt.id_number(lessor_p.ric), "chzrxm": self.dirt.name(lessee_p.name),
            "chzrzjhm": self.dirt.id_number(lessee_p.ric),
            "zlqsrq": datetime.combine(start, time(0)),
            "zlzzrq": datetime.combine(end or start + timedelta(days=365 * self.rng.randint(1, 3)), time(0)),
            "yzj": float(self.rng.randrange(1500, 12000, 100)), "bazt": "注销" if end else "有效",
        }, {"house": house, "lessor": lessor, "lessee": lessee})

    # -- market regulation ---------------------------------------------------
    def enterprise(self, e: Enterprise) -> Row:
        rep = self.person(e.legal_rep)
        legacy = e.established < date(2015, 10, 1) and self.rng.random() < 0.3
        return Row("market", "qy_djxx", {
            "zch": e.reg_no, "tyshxydm": "" if legacy else self.dirt.maybe_missing(e.uscc, 0.3),
            "qymc": e.name.replace("(", "（").replace(")", "）"), "qylx": e.kind,
            "fddbr": self.dirt.name(rep.name), "fddbrzjhm": self.dirt.id_number(rep.ric),
            "zczb": e.capital, "clrq": f"{e.established:%Y-%m-%d}", "djzt": e.status,
            "zxrq": f"{e.closed:%Y-%m-%d}" if e.closed else None,
            "zs": e.address.text(self.rng.random() < 0.5) if e.address else None,
        }, {"enterprise": e.uscc, "legal_representative": rep.ric})

    # -- education -----------------------------------------------------------
    def student(self, p: Person) -> Row:
        years = age(p.birth, self.city.today)
        grade = max(1, min(9, years - 5))
        school = self.rng.choice(self.geo["primary_schools"] if grade <= 6 else self.geo["secondary_schools"])
        guardian_ric = p.mother or p.father
        guardian = self.person(guardian_ric) if guardian_ric else None
        p.student_no = p.student_no or f"G{p.ric}"
        truth = {"student": p.ric, "house": p.house}
        if guardian:
            truth["guardian"] = guardian.ric
        enrol_year = self.city.today.year - grade + (1 if self.city.today.month < 9 else 0)
        return Row("education", "xs_xj", {
            "xjh": p.student_no, "xm": self.dirt.name(p.name), "xb": p.gender, "csrq": self.dirt.date_text(p.birth, "%Y/%m/%d"),
            "sfzjh": self.dirt.id_number(p.ric), "xxmc": school,
            "nj": "一二三四五六七八九"[grade - 1] + "年级", "rxny": f"{enrol_year}09",
            "jhrxm": self.dirt.name(guardian.name) if guardian else None,
            "jhrsfzh": self.dirt.id_number(guardian.ric) if guardian else None,
            "jzdz": self.address(p.house, False), "xjzt": "在读",
        }, truth)


def initial_rows(city: City, views: DepartmentViews, months: int = 6) -> list[Row]:
    """Every row the departments hold about the city on ``city.today``."""
    rows: list[Row] = []
    today = city.today
    rows += [views.house(h) for h in city.houses.values()]
    for hh in city.households.values():
        if city.people[hh.head].hukou:
            rows.append(views.household(hh))
    month_list = [shift_month(f"{today:%Y%m}", -i) for i in range(months, 0, -1)]
    for p in city.people.values():
        years = age(p.birth, today)
        if p.hukou:
            rows.append(views.registered_person(p))
        elif years >= 16:
            rows.append(views.residence_permit(p))
        if p.mother and p.birth.year >= 1996 and p.ric[:4] == "4403":
            rows.append(views.birth_certificate(p))
        if p.insured_no:
            rows.append(views.insured_person(p))
            for month in month_list:
                rows += views.contributions(p, month)
            p.last_paid_month = month_list[-1]
        if 6 <= years <= 15 and p.death is None:
            rows.append(views.student(p))
    rows += [views.marriage(m) for m in city.marriages]
    rows += [views.enterprise(e) for e in city.enterprises.values()]
    rows += [views.rental(r) for r in city.rentals]
    return rows


def shift_month(month: str, offset: int) -> str:
    """'YYYYMM' moved by ``offset`` months."""
    index = int(month[:4]) * 12 + int(month[4:]) - 1 + offset
    return f"{index // 12:04d}{index % 12 + 1:02d}"
