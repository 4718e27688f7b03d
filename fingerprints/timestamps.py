"""Timestamps in the formats exports and logs use -> POSIX seconds -> UTC ISO 8601.

Recognised without help: ISO 8601 (with 'T' or a space, basic or extended, any offset or 'Z'),
the web-server log form (10/Oct/2024:13:55:36 -0700), RFC 2822 mail dates, epoch seconds,
milliseconds or microseconds, year-first dates with slashes, and dates with English month names.
A trailing 'UTC', 'GMT' or IANA zone name (Asia/Shanghai) is honoured. Times without a zone are
taken in the reader's default zone (UTC unless told). Day/month-first numeric dates (05/01/2024)
are refused as ambiguous, and so are zone abbreviations other than UTC and GMT (CST is three
different zones): guessing would shift a login by hours or months without anyone noticing.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The datetime range in UTC, so that iso_utc can always render a parsed value.
_MIN_SECONDS = (datetime(1, 1, 2, tzinfo=UTC) - _EPOCH).total_seconds()
_MAX_SECONDS = (datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH).total_seconds()
_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
# 10/Oct/2024:13:55:36 -0700, the %t of Apache and nginx logs (brackets already removed).
_CLF = re.compile(r"(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:\s*([+-])(\d{2}):?(\d{2}))?")
_EPOCH_DIGITS = re.compile(r"\d{9,16}(?:\.\d+)?")
_NUMERIC_DAY_FIRST = re.compile(r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b")
_ZONE_SUFFIX = re.compile(r"^(.*\d)\s*(?:\(?\s*([A-Za-z][A-Za-z_+\-/0-9]*)\s*\)?)$")
# Year-first with slashes and English month names: unambiguous forms that fromisoformat does not take.
_PATTERNS = (
    "%Y-%m-%d %H:%M:%S %z", "%Y/%m/%d %H:%M:%S %z",
    "%Y/%m/%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d",
    "%d/%b/%Y %H:%M:%S", "%d-%b-%Y %H:%M:%S", "%d %b %Y %H:%M:%S", "%d %B %Y %H:%M:%S",
    "%b %d %Y %H:%M:%S", "%b %d, %Y %H:%M:%S", "%B %d, %Y %H:%M:%S", "%b %d, %Y %I:%M:%S %p",
    "%a %b %d %H:%M:%S %Y", "%d %b %Y", "%b %d, %Y", "%B %d, %Y",
)


def zone(name: str) -> tzinfo:
    """An IANA zone name (or UTC) -> tzinfo; ValueError naming the fix for an unknown name."""
    if name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Asia/Shanghai or UTC") from exc


class TimeParser:
    """Parses timestamps of one source; remembers the last text, as consecutive log lines repeat it."""

    def __init__(self, *, default_zone: tzinfo = UTC, fmt: str | None = None):
        self.default_zone = default_zone
        self.fmt = fmt
        self._last_text = ""
        self._last_value = 0.0
        self._days: dict[str, float] = {}  # '10/Oct/2024' -> its midnight UTC: a log spans few days
        self._minute = ("", "", 0.0)  # the last log timestamp's text before and after its seconds, and its minute

    def seconds(self, text: str) -> float:
        """`text` -> POSIX seconds; ValueError with the reason and the fix."""
        if text == self._last_text:
            return self._last_value
        value = self._clf_fast(text) if self.fmt is None and len(text) == 26 and text[2] == "/" else None
        if value is None:
            value = self._parse(text.strip())
        if not _MIN_SECONDS <= value < _MAX_SECONDS:
            raise ValueError(f"timestamp {text!r} is outside the years 1-9999 in UTC")
        self._last_text, self._last_value = text, value
        return value

    def _aware(self, value: datetime) -> float:
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.default_zone)
        return (value - _EPOCH).total_seconds()

    def _parse(self, text: str) -> float:
        if not text:
            raise ValueError("empty timestamp")
        if self.fmt is not None:
            try:
                return self._aware(datetime.strptime(text, self.fmt))
            except ValueError as exc:
                raise ValueError(f"timestamp {text!r} does not match --time-format {self.fmt!r}") from exc
        if len(text) > 9 and text[4] == "-":  # the common case first: ISO 8601
            try:
                return self._aware(datetime.fromisoformat(text))
            except ValueError:
                pass
        if _EPOCH_DIGITS.fullmatch(text):
            number = float(text)
            digits = len(text.split(".")[0])
            # 9-10 digits are seconds (1973-2286), 12-13 milliseconds, 15-16 microseconds.
            scale = 1.0 if digits <= 10 else 1e3 if digits <= 13 else 1e6
            return number / scale
        clf = _CLF.fullmatch(text)
        if clf:
            return self._clf(clf, text)
        try:
            return self._aware(datetime.fromisoformat(text))
        except ValueError:
            pass
        body, zone_info = self._split_zone(text)
        for pattern in _PATTERNS:
            try:
                parsed = datetime.strptime(body, pattern)
            except ValueError:
                continue
            return self._aware(parsed if zone_info is None else parsed.replace(tzinfo=zone_info))
        if zone_info is not None and body != text:
            try:
                return self._aware(datetime.fromisoformat(body).replace(tzinfo=zone_info))
            except ValueError:
                pass
        try:
            return self._aware(parsedate_to_datetime(text))
        except (TypeError, ValueError, IndexError):
            pass
        if _NUMERIC_DAY_FIRST.match(text):
            raise ValueError(f"timestamp {text!r} is ambiguous (day/month or month/day?); "
                             "pass --time-format, e.g. '%d/%m/%Y %H:%M:%S'")
        raise ValueError(f"timestamp {text!r} is not in a recognised format; "
                         "pass --time-format with a strptime pattern, e.g. '%d.%m.%Y %H:%M'")

    def _clf_fast(self, text: str) -> float | None:
        """'10/Oct/2024:13:55:36 -0700' by slicing, for the millions of lines of a web log; None if not that form."""
        head, tail, minute = self._minute
        if text[:17] == head and text[20:] == tail and text[18:20].isdigit() and text[18:20] < "61":
            return minute + int(text[18:20])  # a log is in time order: most lines fall in the last line's minute
        if text[6] != "/" or text[11] != ":" or text[20] != " " or text[21] not in "+-":
            return None
        try:
            hour, minute, second = int(text[12:14]), int(text[15:17]), int(text[18:20])
            offset = int(text[22:24]) * 3600 + int(text[24:26]) * 60
        except ValueError:
            return None
        if hour > 23 or minute > 59 or second > 60:
            return None
        day = self._days.get(text[:11])
        if day is None:
            month = _MONTHS.get(text[3:6].lower())
            if month is None or not text[:2].isdigit() or not text[7:11].isdigit():
                return None
            try:
                day = self._days[text[:11]] = (datetime(int(text[7:11]), month, int(text[:2]), tzinfo=UTC)
                                               - _EPOCH).total_seconds()
            except ValueError:
                return None
        start = day + hour * 3600 + minute * 60 - (offset if text[21] == "+" else -offset)
        self._minute = (text[:17], text[20:], start)
        return start + second

    def _clf(self, match: re.Match[str], text: str) -> float:
        day, month_name, year, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
        month = _MONTHS.get(month_name.lower())
        if month is None:
            raise ValueError(f"timestamp {text!r} has an unknown month {month_name!r}")
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        naive = datetime(int(year), month, int(day), int(hour), int(minute), int(second), micro)
        if sign is None:
            return self._aware(naive)
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        return self._aware(naive.replace(tzinfo=timezone(offset if sign == "+" else -offset)))

    @staticmethod
    def _split_zone(text: str) -> tuple[str, tzinfo | None]:
        """'2024-05-01 10:00 Asia/Shanghai' -> ('2024-05-01 10:00', zone); no suffix -> (text, None)."""
        match = _ZONE_SUFFIX.match(text)
        if not match:
            return text, None
        body, name = match.group(1), match.group(2)
        if name.upper() in ("UTC", "GMT", "Z"):
            return body, UTC
        if name.upper() in ("AM", "PM"):
            return text, None
        if "/" in name:
            return body, zone(name)
        if name.isalpha() and name.isupper() and 2 <= len(name) <= 5:
            raise ValueError(f"time zone abbreviation {name!r} is ambiguous; remove it and pass "
                             "--timezone with an IANA name (e.g. America/Chicago)")
        return text, None


def iso_utc(seconds: float) -> str:
    """POSIX seconds -> '2024-05-01T10:00:00Z' (whole seconds: the scanner measures hours)."""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds // 1))
    except (OverflowError, OSError, ValueError):  # outside the C library's range (e.g. before 1970 on Windows)
        return (_EPOCH + timedelta(seconds=int(seconds // 1))).strftime("%Y-%m-%dT%H:%M:%SZ")
