"""Standardizers: one department value in, one canonical GLDM value out. Pure functions.

Every standardizer either returns a ``Standardized`` (the value, possibly None, and
the findings met on the way — a bad check character is a finding, the record still
flows) or raises ``Rejected`` with a reason code (an impossible date). Nothing else
escapes: arbitrary unicode input is data, not a crash.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Generic, Literal, TypeVar

import opencc
from stdnum.cn import uscc as uscc_std
from stdnum.iso7064 import mod_11_2

from kintsmesh.errors import RejectedRecord
from kintsmesh.settings import CITY_TZ

T = TypeVar("T")

NULL_MARKERS = frozenset({"", "null", "none", "无", "-", "--", "/", "n/a", "na", "不详", "未知"})
MIDDLE_DOTS = "·•．・‧∙⋅˙.･"  # "." too: NFKC turns the full-width period into it
PROVINCE_CITY_PREFIXES = ("广东省深圳市", "广东深圳市", "广东省深圳", "深圳市", "深圳")

Gender = Literal["0", "1", "2", "9"]  # GB/T 2261.1: unknown, male, female, unspecified


class Rejected(RejectedRecord):
    """A value that cannot be made canonical; the record goes to the DLQ with this reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Standardized(Generic[T]):
    value: T | None
    findings: tuple[str, ...] = ()


def is_null(raw: Any) -> bool:
    if raw is None:
        return True
    if not isinstance(raw, str):
        return False
    if raw.isascii():   # no full-width forms: the markers, whitespace aside (they hold no inner space)
        return raw.strip().lower() in NULL_MARKERS
    return clean_text(raw).lower() in NULL_MARKERS


# control (Cc), format (Cf: bidi controls, zero-width characters), surrogate, private-use and unassigned
# code points carry no text a department meant to write; whitespace controls are kept for clean_text
INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
OPEN_ENDED_YEAR = 9999   # a date in this year means "no end date" (有效期至 9999-12-31)


def strip_invisible(raw: str) -> str:
    """``raw`` without invisible characters; ``raw`` itself (the same object) when it has none."""
    if raw.isprintable():   # no Cc / Cf / Cs / Co / Cn (and no separator but the ASCII space)
        return raw
    kept = "".join(ch for ch in raw if ch.isspace() or unicodedata.category(ch) not in INVISIBLE)
    return raw if kept == raw else kept


def clean_text(raw: str) -> str:
    """Full-width → half-width (NFKC), whitespace of every width trimmed and collapsed."""
    # str.split() splits on exactly the characters re's \s matches; NFKC leaves ASCII as it is
    return " ".join((raw if raw.isascii() else unicodedata.normalize("NFKC", raw)).split())


# --------------------------------------------------------------------------- identifiers


def upgrade_legacy_ric(number: str) -> str:
    """A 15-digit number (issued before 1999) as its 18-character form: century 19, new check."""
    body = number[:6] + "19" + number[6:]
    return body + mod_11_2.calc_check_digit(body)


def resident_id(raw: Any) -> Standardized[str]:
    """GB 11643-1999 resident identity number, 18 characters with an upper-case check character."""
    if is_null(raw):
        return Standardized(None, ("missing",))
    text = clean_text(str(raw)).replace(" ", "").upper()
    findings: list[str] = []
    if len(text) == 15 and text.isascii() and text.isdigit():
        text = upgrade_legacy_ric(text)
        findings.append("legacy_15_upgraded")
    # ASCII only: other scripts' digits (Arabic-Indic, Devanagari) pass isdigit() and would be another identity
    if len(text) != 18 or not text.isascii() or not text[:17].isdigit() or text[17] not in "0123456789X":
        return Standardized(None, ("malformed",))
    # ISO 7064 MOD 11-2 on the 17-digit body (what stdnum.cn.ric.calc_check_digit computes after
    # cleaning the number again, which cost more than the check itself)
    if mod_11_2.calc_check_digit(text[:17]) != text[17]:
        findings.append("bad_check_character")
    try:
        date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        findings.append("impossible_birth_date")
    return Standardized(text, tuple(findings))


def social_credit_code(raw: Any) -> Standardized[str]:
    """GB 32100-2015 unified social credit code."""
    if is_null(raw):
        return Standardized(None, ("missing",))
    text = clean_text(str(raw)).replace(" ", "").upper()
    if len(text) != 18 or not text.isascii():
        return Standardized(None, ("malformed",))
    return _checked_uscc(text)


@lru_cache(maxsize=65536)
def _checked_uscc(text: str) -> Standardized[str]:
    # cached: every insurance contribution names its employer's code, and stdnum cleans the number
    # twice per validation, which cost more than the rest of the row
    try:
        uscc_std.validate(text)
    except uscc_std.InvalidChecksum:
        return Standardized(text, ("bad_check_character",))
    except ValueError:
        return Standardized(None, ("malformed",))
    return Standardized(text)


# --------------------------------------------------------------------------- names


_T2S = opencc.OpenCC("t2s")


def person_name(raw: Any) -> Standardized[str]:
    """Trimmed, half-width, inner spaces removed, minority-name middle dots unified to U+00B7, traditional
    characters as simplified (陳麗華 -> 陈丽华: the resident registry writes names in simplified)."""
    if is_null(raw):
        return Standardized(None, ("missing",))
    text = clean_text(str(raw))
    findings: list[str] = []
    if not text.isascii() and (simplified := _T2S.convert(text)) != text:
        text = simplified
        findings.append("traditional_simplified")
    unified = "".join("·" if ch in MIDDLE_DOTS else ch for ch in text)
    if unified != text:
        findings.append("middle_dot_unified")
    if " " in unified and not re.search(r"[A-Za-z] [A-Za-z]", unified):
        unified = unified.replace(" ", "")
        findings.append("inner_space_removed")
    if not unified or all(not ch.isalpha() for ch in unified):
        return Standardized(None, ("malformed",))
    return Standardized(unified, tuple(findings))


# --------------------------------------------------------------------------- dates

_DATE_FORMATS = ("%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日")


def calendar_date(raw: Any, *, earliest: date = date(1890, 1, 1), latest: date | None = None) -> Standardized[date]:
    """A date from text in any department format, a SQL date, or Debezium's days-since-epoch int.

    Impossible dates (20230230) and dates outside [earliest, latest] are rejected.
    """
    if is_null(raw):
        return Standardized(None, ("missing",))
    if isinstance(raw, bool):
        raise Rejected("invalid_date", f"{raw!r} is not a date")
    if isinstance(raw, datetime):
        value = raw.date()
    elif isinstance(raw, date):
        value = raw
    elif isinstance(raw, int):
        value = _from_days(raw)
    else:
        value = _parse_date_text(clean_text(str(raw)))
    if value.year >= OPEN_ENDED_YEAR:
        return Standardized(None, ("open_ended",))
    if value < earliest or value > (latest or date.today() + timedelta(days=366)):
        raise Rejected("date_out_of_range", f"{value.isoformat()} is outside {earliest.isoformat()}..")
    return Standardized(value)


def _from_days(days: int) -> date:
    try:
        return date(1970, 1, 1) + timedelta(days=days)
    except OverflowError:
        raise Rejected("invalid_date", f"{days} days since 1970 is not a date") from None


def _parse_date_text(text: str) -> date:
    if text.isdigit() and (len(text) != 8 or not text.isascii()):
        # strptime reads "201211" as 2012-01-01: digits alone are a date only as YYYYMMDD
        raise Rejected("invalid_date", f"{text[:40]!r} is not a date (digits alone must be YYYYMMDD)")
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    # YYYYMMDD, or year, month and day each after a separator (never "2012-11" read as 2012-01-01)
    digits = re.fullmatch(r"([0-9]{4})([0-9]{2})([0-9]{2})", text) or \
        re.fullmatch(r"([0-9]{4})[-/.年]([0-9]{1,2})[-/.月]([0-9]{1,2})日?", text)
    if digits:
        year, month, day = map(int, digits.groups())
        try:
            return date(year, month, day)
        except ValueError:
            raise Rejected("impossible_date", f"{text!r} has no such day") from None
    raise Rejected("invalid_date", f"{text[:40]!r} is not a date in any known format")


def timestamp(raw: Any, *, zone: timezone = CITY_TZ) -> Standardized[datetime]:
    """Debezium timestamps (epoch micros for TIMESTAMP, ISO text for TIMESTAMPTZ) as aware datetimes."""
    if is_null(raw):
        return Standardized(None, ("missing",))
    if isinstance(raw, bool):
        raise Rejected("invalid_timestamp", f"{raw!r} is not a timestamp")
    if isinstance(raw, int):
        try:
            # a department's TIMESTAMP (no zone) is local time, carried by Debezium as if it were UTC
            naive = datetime(1970, 1, 1) + timedelta(microseconds=raw)
        except OverflowError:
            raise Rejected("invalid_timestamp", f"{raw} microseconds is out of range") from None
        return Standardized(naive.replace(tzinfo=zone))
    text = clean_text(str(raw))
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Rejected("invalid_timestamp", f"{text[:40]!r} is not an ISO timestamp") from None
    return Standardized(value if value.tzinfo else value.replace(tzinfo=zone))


def month(raw: Any) -> Standardized[str]:
    """A calendar month as YYYYMM (from YYYYMM, YYYY-MM, YYYY/MM or YYYY年MM月), years 1950..2100."""
    if is_null(raw):
        return Standardized(None, ("missing",))
    text = clean_text(str(raw))
    found = re.fullmatch(r"([0-9]{4})(?:[-/.年]?)([0-9]{2})月?", text)
    if not found:
        raise Rejected("invalid_month", f"{text[:40]!r} is not a month (YYYYMM)")
    year, number = int(found.group(1)), int(found.group(2))
    if not (1 <= number <= 12 and 1950 <= year <= 2100):
        raise Rejected("invalid_month", f"{text!r}: no month {number:02d} of {year}, or outside 1950..2100")
    return Standardized(f"{year:04d}{number:02d}")


def decimal_number(raw: Any) -> Standardized[str]:
    """A finite decimal (thousands separators dropped) in plain notation; its range is the field's."""
    if is_null(raw):
        return Standardized(None, ("missing",))
    if isinstance(raw, bool):
        raise Rejected("not_a_number", f"{raw!r} is not a number")
    text = clean_text(str(raw)).replace(",", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise Rejected("not_a_number", f"{text[:40]!r} is not a number") from None
    if not value.is_finite() or not text.isascii():
        raise Rejected("not_a_number", f"{text[:40]!r} is not a finite decimal number")
    if value and abs(value.adjusted()) > 30:   # 1E+999999999 would be a gigabyte of digits in plain notation
        raise Rejected("out_of_range", f"{text[:40]!r} is not a plausible quantity")
    return Standardized(format(value, "f"))


# --------------------------------------------------------------------------- codes


def coded(raw: Any, dictionary: dict[str, str], what: str) -> Standardized[str]:
    """A department code mapped through a declared dictionary to the national code."""
    if is_null(raw):
        return Standardized(None, ("missing",))
    key = clean_text(str(raw)).upper()
    if key in dictionary:
        return Standardized(dictionary[key])
    raise Rejected(f"unknown_{what}_code", f"{key[:20]!r} is not a known {what} code")


# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True)
class Address:
    district: str | None
    street: str | None
    community: str | None
    detail: str
    full: str   # the canonical text: district + street + community + detail, without province/city


_ADDRESS = re.compile(
    r"^(?P<district>[\u4e00-\u9fa5]{1,6}?区)?"
    r"(?P<street>[\u4e00-\u9fa5]{1,8}?街道)?"
    r"(?P<community>[\u4e00-\u9fa5]{1,10}?社区)?"
    r"(?P<detail>.*)$"
)


def address(raw: Any) -> Standardized[Address]:
    """Strip the province/city prefix; split district / street / community; keep the rest."""
    if is_null(raw):
        return Standardized(None, ("missing",))
    text = clean_text(str(raw)).replace(" ", "")
    findings: list[str] = []
    for prefix in PROVINCE_CITY_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
            findings.append("prefix_stripped")
            break
    match = _ADDRESS.match(text)
    assert match is not None  # the pattern matches every string
    parts = match.groupdict()
    if not parts["district"]:
        findings.append("no_district")
    value = Address(parts["district"], parts["street"], parts["community"], parts["detail"], text)
    return Standardized(value, tuple(findings))
