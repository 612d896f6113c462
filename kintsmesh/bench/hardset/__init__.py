"""A hard person-linkage set, generated independently of the simulator (``kintsmesh.simulate``) and of its
corruption code: its own people, families, sources (five department-like tables with their own column
names, mapped by the YAML files beside this module through the normalize stage's mapping engine) and its
own ways of writing a person differently.

Every person belongs to one *category*, the hard case its records exercise (``CATEGORIES``): records
without a RIC and with few fields, nameless birth certificates that arrive before the registration, RICs
with a bad check character, one-character slips (similar shape, one edit), homophones, traditional
characters, minority names with middle dots, 15-digit RICs, full-width digits, married women (husband's
surname in front, a new household), moves, the commonest names, twins, wrong gender codes, transposed
birth-date digits, and people whose only records carry no national id at all. ``generate`` returns the
raw rows in arrival order, each with the true person it describes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from stdnum.iso7064 import mod_11_2

CATEGORIES: dict[str, float] = {   # category -> share of the persons generated
    "plain": 0.16, "no_ric_few_fields": 0.06, "nameless_newborn": 0.05, "bad_check": 0.05, "name_slip": 0.07,
    "homophone": 0.06, "traditional": 0.05, "minority": 0.04, "legacy_15": 0.04, "full_width": 0.04,
    "married_woman": 0.06, "moved": 0.05, "common_name": 0.06, "twins": 0.04, "gender_code": 0.04,
    "transposed_date": 0.05, "no_national_id": 0.04,
}

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN_MALE = "伟强磊军勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆帅旭宁龙林欢阳建国峰东亮成志文博晨轩睿泽翔昊天宏玉千令凤"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀英玲桂兰燕萍红梅琳雪婷颖倩慧佳欣怡晶洁琴云莉蕾璐薇茜月凤玉今千晴"
COMMON_NAMES = ("王伟", "李娜", "张伟", "王芳", "李伟", "王秀英", "李秀英", "张敏", "刘洋", "张静", "王静", "李强")
MINORITY_NAMES = ("买买提·艾力", "阿依古丽·吐尔逊", "热合曼·阿不都", "古丽娜尔·买买提", "扎西·次仁", "卓玛·央金",
                  "艾尔肯·吾斯曼", "迪丽热巴·艾则孜", "努尔兰·哈力克", "巴特尔·乌力吉")
DOTS = ("·", "•", "・", "．", ".", "‧")
HOMOPHONES = {"伟": "玮", "明": "铭", "华": "化", "丽": "莉", "静": "晶", "军": "君", "芳": "方", "红": "宏", "燕": "艳",
              "敏": "民", "杰": "洁", "婷": "亭", "霞": "侠", "琳": "林", "峰": "锋", "斌": "彬", "涛": "韬", "梅": "玫",
              "晨": "辰", "浩": "昊", "颖": "莹", "欣": "馨", "东": "冬", "宇": "雨"}
SHAPES = {"玉": "王", "王": "玉", "未": "末", "千": "干", "令": "今", "今": "令", "凤": "风", "晴": "睛", "刚": "钢",
          "天": "夭", "日": "曰", "己": "已", "杨": "扬", "鹏": "朋", "娟": "绢", "辉": "晖", "萍": "苹", "帅": "师",
          "兰": "三", "东": "尔", "雪": "雷", "云": "去", "杰": "木", "斌": "武", "波": "坡", "超": "起", "洁": "沽"}
TRADITIONAL = {"陈": "陳", "刘": "劉", "张": "張", "杨": "楊", "黄": "黃", "赵": "趙", "吴": "吳", "孙": "孫", "马": "馬",
               "郑": "鄭", "谢": "謝", "许": "許", "韩": "韓", "冯": "馮", "邓": "鄧", "伟": "偉", "华": "華", "丽": "麗",
               "军": "軍", "红": "紅", "东": "東", "国": "國", "龙": "龍", "凤": "鳳", "兰": "蘭", "云": "雲", "艳": "艷",
               "娟": "娟", "强": "強", "涛": "濤", "辉": "輝", "鹏": "鵬", "飞": "飛", "鑫": "鑫", "颖": "穎", "倩": "倩",
               "晓": "曉", "丰": "豐", "宁": "寧", "阳": "陽", "帅": "帥", "欢": "歡", "琳": "琳", "静": "靜"}
DISTRICTS = {"440303": "罗湖区", "440304": "福田区", "440305": "南山区", "440306": "宝安区", "440307": "龙岗区",
             "440308": "盐田区", "440309": "龙华区", "440310": "坪山区", "440311": "光明区"}
ELSEWHERE = ("110101", "310104", "430102", "510104", "420106", "360102", "450103", "350203", "650102", "540102")
STREETS = ("桂园", "南园", "沙头", "华富", "粤海", "蛇口", "新安", "西乡", "布吉", "坂田", "民治", "龙城", "沙头角", "坑梓",
           "公明", "园岭", "莲花", "香蜜湖", "招商", "南头")
ROADS = ("深南大道", "红荔路", "北环大道", "滨海大道", "宝安大道", "龙岗大道", "梅林路", "建设路", "人民路", "新洲路")
FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


@dataclass
class Person:
    pid: str
    category: str
    name: str
    gender: str          # "1" male, "2" female
    birth: date
    area: str            # RIC area code
    ric: str
    household: str
    address: str
    mother: Person | None = None
    father: Person | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RawRow:
    source: str                  # the hard set's table: registry, permit, insurance, birth, survey
    row: dict[str, Any]
    truth: dict[str, str]        # role -> true person id
    category: str
    early: bool = False          # arrives before the rest (a nameless birth certificate before its registration)


def check_character(body: str) -> str:
    return mod_11_2.calc_check_digit(body)   # type: ignore[no-any-return]


class Generator:
    def __init__(self, seed: int, today: date) -> None:
        self.rng = random.Random(seed)
        self.today = today
        self.persons: list[Person] = []
        self.rows: list[RawRow] = []
        self._sequences: dict[tuple[str, date], int] = {}
        self._households = 0
        self._keys = 0

    # ------------------------------------------------------------------ people

    def ric(self, area: str, birth: date, gender: str) -> str:
        n = self._sequences.get((area, birth), self.rng.randrange(0, 40)) + 1
        self._sequences[(area, birth)] = n
        sequence = n * 2 + (1 if gender == "1" else 0)   # odd: male, even: female
        body = f"{area}{birth:%Y%m%d}{sequence % 1000:03d}"
        return body + check_character(body)

    def given(self, gender: str) -> str:
        pool = GIVEN_MALE if gender == "1" else GIVEN_FEMALE
        return "".join(self.rng.choice(pool) for _ in range(self.rng.choice((1, 2, 2, 2))))

    def address(self, district: str | None = None) -> str:
        d = district or self.rng.choice(list(DISTRICTS.values()))
        street = self.rng.choice(STREETS)
        return (f"{d}{street}街道{street}社区{self.rng.choice(ROADS)}{self.rng.randrange(1, 999)}号"
                f"{self.rng.randrange(1, 30)}栋{self.rng.randrange(101, 3300)}室")

    def household(self) -> str:
        self._households += 1
        return f"H{440300000 + self._households:09d}"

    def person(self, category: str, *, age: tuple[int, int] = (18, 85), gender: str | None = None,
               surname: str | None = None, name: str | None = None, birth: date | None = None,
               household: str | None = None, address: str | None = None) -> Person:
        gender = gender or self.rng.choice("12")
        birth = birth or self.today - timedelta(days=self.rng.randrange(age[0] * 365, age[1] * 365 + 1))
        area = self.rng.choice(list(DISTRICTS)) if self.rng.random() < 0.6 else self.rng.choice(ELSEWHERE)
        person = Person(f"T{len(self.persons):07d}", category, name or (surname or self._surname()) + self.given(gender),
                        gender, birth, area, self.ric(area, birth, gender), household or self.household(),
                        address or self.address())
        self.persons.append(person)
        return person

    def _surname(self) -> str:
        # a few surnames hold most people (王 李 张 刘 陈 ...), as in the real distribution
        index = min(int(self.rng.paretovariate(1.2)) - 1, len(SURNAMES) - 1)
        return SURNAMES[index if self.rng.random() < 0.7 else self.rng.randrange(len(SURNAMES))]

    # ------------------------------------------------------------------ rows, one per source

    def key(self) -> str:
        self._keys += 1
        return f"{self._keys:08d}"

    def emit(self, source: str, person: Person, row: dict[str, Any], early: bool = False,
             truth: dict[str, str] | None = None) -> None:
        self.rows.append(RawRow(source, {"id": self.key(), **row}, truth or {"person": person.pid}, person.category,
                                early))

    def registry(self, p: Person, *, ric: str | None = None, name: str | None = None, household: str | None = None,
                 address: str | None = None, parents: bool = False) -> None:
        row = {"sfzh": p.ric if ric is None else ric, "xm": name or p.name, "xb": p.gender,
               "csrq": self.date_text(p.birth), "hh": household or p.household, "dz": address or p.address}
        if parents and p.mother is not None:
            row["mqsfzh"] = p.mother.ric
        if "certificate" in p.extra and self.rng.random() < 0.7:
            row["cszmbh"] = p.extra["certificate"]   # a newborn's registration names its birth certificate
        self.emit("registry", p, row)

    def permit(self, p: Person, *, ric: str | None = None, name: str | None = None, address: str | None = None) -> None:
        self.emit("permit", p, {"sfzh": p.ric if ric is None else ric, "xm": name or p.name, "xb": p.gender,
                                "dz": address or p.address})

    def insurance(self, p: Person, *, ric: str | None = None, name: str | None = None, gender: str | None = None,
                  birth: str | None = None) -> None:
        si = p.extra.setdefault("si", f"SI{self.rng.randrange(10**9, 10**10)}")
        self.emit("insurance", p, {"si_no": si, "sfzh": p.ric if ric is None else ric, "xm": name or p.name,
                                   "xb": gender or p.gender, "csrq": birth or self.date_text(p.birth)})

    def survey(self, p: Person, *, name: str | None = None, gender: str | None = None, birth: str | None = None,
               address: str | None = None) -> None:
        """A source of another schema that carries no national id (a phone, sometimes)."""
        phone = p.extra.setdefault("phone", f"13{self.rng.randrange(10**8, 10**9)}")
        self.emit("survey", p, {"full_name": name or p.name, "sex": gender or self.rng.choice(
            {"1": ("M", "男", "1"), "2": ("F", "女", "2")}[p.gender]), "dob": birth or self.date_text(p.birth),
            "addr": address or p.address, "phone": phone if self.rng.random() < 0.5 else None})

    def birth_certificate(self, child: Person, *, name: str | None = None, early: bool = False) -> None:
        assert child.mother is not None and child.father is not None
        child.extra["certificate"] = f"O{self.rng.randrange(10**8, 10**9)}"
        self.emit("birth", child, {"cert_no": child.extra["certificate"], "child_name": name, "child_sex": child.gender, "born": child.birth.isoformat(),
                                   "mother_id": child.mother.ric, "father_id": child.father.ric,
                                   "home": child.mother.address}, early=early)

    def date_text(self, d: date) -> str:
        return self.rng.choice((f"{d:%Y-%m-%d}", f"{d:%Y%m%d}", f"{d:%Y/%m/%d}", f"{d.year}年{d.month}月{d.day}日"))

    # ------------------------------------------------------------------ how a value is written differently

    def slip(self, name: str) -> str:
        """One character of the given name written as a similar-looking one, or one added / dropped."""
        spots = [i for i, ch in enumerate(name) if i > 0 and ch in SHAPES]
        if spots and self.rng.random() < 0.7:
            i = self.rng.choice(spots)
            return name[:i] + SHAPES[name[i]] + name[i + 1:]
        if len(name) == 3:
            return name[:2] if self.rng.random() < 0.5 else name[0] + name[2]
        return name + self.rng.choice(GIVEN_MALE + GIVEN_FEMALE)

    def homophone(self, name: str) -> str:
        spots = [i for i, ch in enumerate(name) if i > 0 and ch in HOMOPHONES]
        if not spots:
            return name
        i = self.rng.choice(spots)
        return name[:i] + HOMOPHONES[name[i]] + name[i + 1:]

    def transposed(self, d: date) -> str:
        text = f"{d:%Y%m%d}"
        for _ in range(20):
            i = self.rng.choice((2, 4, 6))   # 19|85 -> 19|58, 03|12 -> 30|12 (invalid, tried again), day digits
            swapped = text[:i] + text[i + 1] + text[i] + text[i + 2:]
            if self.rng.random() < 0.3:
                swapped = text[:4] + text[6:8] + text[4:6]   # month and day swapped
            try:
                if swapped != text and date(int(swapped[:4]), int(swapped[4:6]), int(swapped[6:])) < self.today:
                    return swapped
            except ValueError:
                continue
        return text

    # ------------------------------------------------------------------ categories

    def make(self, category: str) -> None:
        getattr(self, f"_{category}")()

    def _plain(self) -> None:
        p = self.person("plain")
        self.registry(p)
        writers: list[Callable[[Person], None]] = [self.permit, self.insurance, self.survey]
        for writer in self.rng.sample(writers, self.rng.choice((1, 2))):
            writer(p)

    def _no_ric_few_fields(self) -> None:
        p = self.person("no_ric_few_fields")
        self.registry(p)
        self.permit(p, ric="")   # name, gender and address only
        if self.rng.random() < 0.5:
            self.insurance(p)

    def _family(self, category: str, children: int) -> list[Person]:
        mother = self.person("plain", age=(22, 40), gender="2")
        father = self.person("plain", age=(23, 45), gender="1", household=mother.household, address=mother.address)
        for parent in (mother, father):
            self.registry(parent)
        born = self.today - timedelta(days=self.rng.randrange(20, 700))
        surname = father.name[0]
        kids = []
        for _ in range(children):
            kid = self.person(category, gender=self.rng.choice("12"), surname=surname, birth=born,
                              household=mother.household, address=mother.address)
            kid.area = mother.area if mother.area in DISTRICTS else "440304"
            kid.ric = self.ric(kid.area, born, kid.gender)
            kid.mother, kid.father = mother, father
            kids.append(kid)
        return kids

    def _nameless_newborn(self) -> None:
        kid, = self._family("nameless_newborn", 1)
        self.birth_certificate(kid, early=True)             # the hospital reports first, before a name is chosen
        self.registry(kid, parents=self.rng.random() < 0.5)

    def _twins(self) -> None:
        a, b = self._family("twins", 2)
        if self.rng.random() < 0.6:
            b.gender = a.gender
            b.ric = self.ric(b.area, b.birth, b.gender)
        b.name = a.name[:-1] + self.given(b.gender)[-1] if len(a.name) == 3 else a.name[0] + self.given(b.gender)
        if b.name == a.name:
            b.name = a.name[0] + "二" + a.name[-1]
        nameless = self.rng.random() < 0.4
        for kid in (a, b):   # the hospital reports both births together, before the registrations
            self.birth_certificate(kid, name=None if nameless else kid.name, early=True)
            self.registry(kid, parents=True)
            if self.rng.random() < 0.5:
                self.survey(kid)

    def _bad_check(self) -> None:
        p = self.person("bad_check")
        wrong = p.ric[:17] + self.rng.choice([c for c in "0123456789X" if c != p.ric[17]])
        self.registry(p, ric=wrong)       # the registry's own copy has the typo: no valid RIC anywhere
        self.insurance(p, ric=wrong)
        if self.rng.random() < 0.6:
            self.permit(p, ric=wrong)

    def _name_slip(self) -> None:
        p = self.person("name_slip")
        self.registry(p)
        self.survey(p, name=self.slip(p.name))
        if self.rng.random() < 0.5:
            self.insurance(p, ric="", name=self.slip(p.name))

    def _homophone(self) -> None:
        p = self.person("homophone")
        while self.homophone(p.name) == p.name:
            p.name = p.name[0] + self.rng.choice(tuple(HOMOPHONES)) + p.name[2:]
        self.registry(p)
        self.survey(p, name=self.homophone(p.name))
        self.insurance(p, ric="", name=self.homophone(p.name))

    def _traditional(self) -> None:
        p = self.person("traditional", surname=self.rng.choice("陈刘张杨黄赵吴孙马郑谢许韩冯邓"))
        written = "".join(TRADITIONAL.get(ch, ch) for ch in p.name)
        self.registry(p)
        self.survey(p, name=written)
        self.insurance(p, ric="" if self.rng.random() < 0.5 else None, name=written)

    def _minority(self) -> None:
        p = self.person("minority", name=self.rng.choice(MINORITY_NAMES))
        p.area = self.rng.choice(("650102", "540102"))
        p.ric = self.ric(p.area, p.birth, p.gender)
        self.registry(p)
        self.survey(p, name=p.name.replace("·", self.rng.choice(DOTS)))
        self.permit(p, ric="" if self.rng.random() < 0.5 else None, name=p.name.replace("·", self.rng.choice(DOTS)))

    def _legacy_15(self) -> None:
        p = self.person("legacy_15", age=(30, 85))
        self.registry(p)
        self.insurance(p, ric=p.ric[:6] + p.ric[8:17])   # issued before 1999: no century, no check character
        self.permit(p, ric=p.ric[:6] + p.ric[8:17])

    def _full_width(self) -> None:
        p = self.person("full_width")
        self.registry(p)
        self.insurance(p, ric=p.ric.translate(FULL_WIDTH), birth=f"{p.birth:%Y%m%d}".translate(FULL_WIDTH))
        self.permit(p, ric=p.ric.translate(FULL_WIDTH), name=" ".join(p.name).replace(" ", "\u3000", 1))

    def _married_woman(self) -> None:
        husband = self.person("plain", age=(25, 60), gender="1")
        self.registry(husband)
        p = self.person("married_woman", age=(22, 60), gender="2")
        self.registry(p)                                   # before: her parents' household
        self.registry(p, household=husband.household, address=husband.address)   # after: moved into his
        styled = husband.name[0] + p.name                 # 冠夫姓: the husband's surname in front
        self.survey(p, name=styled if self.rng.random() < 0.6 else p.name, address=husband.address)
        self.insurance(p, ric="" if self.rng.random() < 0.5 else None, name=styled)

    def _moved(self) -> None:
        p = self.person("moved")
        self.registry(p)
        elsewhere = self.address()
        self.survey(p, address=elsewhere)
        self.permit(p, ric="" if self.rng.random() < 0.5 else None, address=elsewhere)

    def _common_name(self) -> None:
        name = self.rng.choice(COMMON_NAMES)
        gender = "1" if name[-1] in "伟强洋" else "2"
        p = self.person("common_name", name=name, gender=gender)
        self.registry(p)
        self.survey(p)
        if self.rng.random() < 0.5:
            self.insurance(p, ric="")

    def _gender_code(self) -> None:
        p = self.person("gender_code")
        self.registry(p)
        self.survey(p, gender=self.rng.choice(("0", "9", "未知", {"1": "2", "2": "1"}[p.gender])))
        self.insurance(p, ric="", gender={"1": "2", "2": "1"}[p.gender])

    def _transposed_date(self) -> None:
        p = self.person("transposed_date")
        self.registry(p)
        self.survey(p, birth=self.transposed(p.birth))
        self.insurance(p, ric="", birth=self.transposed(p.birth))

    def _no_national_id(self) -> None:
        p = self.person("no_national_id")
        self.survey(p)
        self.survey(p, name=self.homophone(p.name) if self.rng.random() < 0.3 else p.name,
                    address=self.address() if self.rng.random() < 0.3 else None)
        if self.rng.random() < 0.5:
            self.survey(p, birth=self.transposed(p.birth) if self.rng.random() < 0.2 else None)


def generate(people: int, seed: int, today: date) -> tuple[list[RawRow], list[Person]]:
    """About ``people`` persons (their parents and husbands included) and their rows, in arrival order:
    shuffled, with the rows marked early first."""
    gen = Generator(seed, today)
    names, weights = zip(*CATEGORIES.items())
    while len(gen.persons) < people:
        gen.make(gen.rng.choices(names, weights)[0])
    rows = gen.rows
    gen.rng.shuffle(rows)
    rows.sort(key=lambda r: not r.early)   # stable: the early ones first, each group shuffled
    return rows, gen.persons
