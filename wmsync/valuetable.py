"""The child value table (``Input_Multi_Name``) <-> :class:`ChildSpec` rows; dates and times.

A value table has four columns per child: ``child_repository``, ``connected``, ``URL`` and
``last_sync_time`` (docs/design.md §2). It arrives in one of three forms:

- text: rows separated by ``;``, columns by runs of whitespace, a value with whitespace
  single-quoted (``'08/01/2013 11:30:45'``); the **last column may contain unquoted
  spaces** (``... WMServer 2011-08-08 12:00``). A quoted ``''`` is an empty value; inside a
  quoted value ``''`` stands for one ``'`` (an extension: ArcGIS has no escape). A quote
  starts a quoted value only at the start of a value. Blank rows (a trailing ``;``) are
  ignored and rows are numbered without them;
- a list of lists or tuples (3 or 4 items; ``True`` for connected, a ``datetime`` for the
  time are accepted, a naive ``datetime`` being local time); an item that is a string is
  read as one text row. Rows are numbered by position; blank rows are ignored;
- an ``arcpy.ValueTable``-like object: ``exportToString()`` when it has it, else
  ``rowCount`` with ``getRow(i)`` (one text row) or ``getValue(r, c)``.

Surrounding whitespace is stripped from every value, quoted or not.

Times without an offset are the local time of this machine; every parsed time is
returned *aware*. A row's :class:`TimeStyle` records how its time was written, so that
:func:`format_time` writes the new Last Synchronized time the same way, in local time.
:func:`format_time` always writes seconds, even for a row written without them
(``2011-08-08 12:00`` -> ``2011-08-08 14:30:05``): the output must not lose precision,
and adds the UTC offset to a time in the hour repeated when daylight saving time ends,
so that it reads back as the same moment.

Dates follow the system's format, as Esri's tool says: ``NN/NN/YYYY`` is month-first
unless the operating system's short date is day-first (:func:`system_date_order`, the
locale or the Windows setting); a date both ways valid gets an informative note naming
both readings. A time that cannot be read is an error for its row, and like any
invalid row it refuses the whole run (docs/design.md §2).
"""

from __future__ import annotations

import functools
import locale
import re
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from wmsync.errors import ValueTableError, redact_url

__all__ = [
    "DEFAULT_STYLE",
    "ChildSpec",
    "RowMessage",
    "TimeStyle",
    "check_parent_url",
    "format_rows",
    "format_time",
    "output_row",
    "parse_children",
    "parse_time",
    "row_count",
    "rows_naming_parent",
    "system_date_order",
    "validate_children",
]

COLUMNS = ("child_repository", "connected", "URL", "last_sync_time")


@dataclass(frozen=True)
class TimeStyle:
    """How a ``last_sync_time`` was written, so a new time can be written the same way.

    :param form: ``"mdy"`` (``MM/DD/YYYY``), ``"dmy"`` (``DD/MM/YYYY``, read so only
        where the system's short date is day-first) or ``"ymd"`` (``YYYY-MM-DD``).
    :param sep: between date and time for ``ymd``: ``" "`` or ``"T"``.
    :param seconds: the text had seconds (informative: output always has them).
    :param ampm: a 12-hour clock with ``AM``/``PM``.
    :param offset: the text had a UTC offset or ``Z``; output then carries the local
        offset (``+02:00``), also for a ``Z`` row, since output is in local time.
    :param date_only: the text was a date alone; output adds the time, 24-hour.
    :param padded: ``mdy``/``dmy`` month and day were written with two digits (``08/01``
        rather than ``8/1``); the hour of a 12-hour clock follows the same choice.
    :param datesep: between the parts of an ``mdy``/``dmy`` date: ``/``, ``.`` or ``-``.
    """

    form: str = "ymd"
    sep: str = " "
    seconds: bool = True
    ampm: bool = False
    offset: bool = False
    date_only: bool = False
    padded: bool = True
    datesep: str = "/"


#: The style of a row that had no time (never synchronized): ``YYYY-MM-DD HH:MM:SS``.
DEFAULT_STYLE = TimeStyle()


@dataclass(frozen=True)
class ChildSpec:
    """One child repository row of the value table.

    ``last_sync`` is aware (local time when the text had no offset) or None when the
    child was never synchronized; ``time_text`` is the time as given (stripped);
    ``connected_text`` the connected flag as given. ``notes`` are messages about the
    row that do not refuse it (an ambiguous or unreadable time), as
    :class:`RowMessage` with level ``"info"`` or ``"warning"``.
    """

    row: int
    name: str
    connected: bool
    connected_text: str
    url: str
    last_sync: Optional[datetime]
    time_text: str
    time_style: TimeStyle
    notes: Tuple[RowMessage, ...] = ()


class RowMessage(NamedTuple):
    """A validation message for the toolbox dialog; ``row`` is 1-based, None for the table."""

    row: Optional[int]
    level: str  # "error", "warning" or "info"
    text: str


# --------------------------------------------------------------------------- times

_OFFSET = r"(Z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)"
_SLASHED = re.compile(
    r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4})"
    r"(?:\s+(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6}))?)?(?:\s*(AM|PM))?"
    r"(?:\s*" + _OFFSET + r")?)?",
    re.ASCII | re.IGNORECASE,
)
_YMD = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:(T|\s+)(\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6}))?)?"
    r"(?:\s*" + _OFFSET + r")?)?",
    re.ASCII | re.IGNORECASE,
)
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_FORMS = "MM/DD/YYYY HH:MM[:SS][ AM|PM], YYYY-MM-DD HH:MM[:SS] or ISO 8601"


def _probe_date_order() -> str:
    """The order of this machine's short date: ``"dmy"``, ``"mdy"`` or ``"ymd"``.

    Windows: the user's short date setting (``sShortDate``); elsewhere the ``locale``
    (``LC_TIME``), through how it writes 22 November 2003. ``"mdy"`` (Esri's documented
    US form) when neither tells.
    """
    if sys.platform == "win32":
        try:
            import winreg

            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, r"Control Panel\International") as key:
                pattern = str(winreg.QueryValueEx(key, "sShortDate")[0]).lower()
            return _order_of({c: pattern.find(c) for c in "dmy"})
        except OSError:
            return "mdy"
    try:
        saved = locale.setlocale(locale.LC_TIME)
        try:
            locale.setlocale(locale.LC_TIME, "")
            written = time.strftime("%x", (2003, 11, 22, 0, 0, 0, 5, 326, -1))
        finally:
            locale.setlocale(locale.LC_TIME, saved)
    except (locale.Error, ValueError):
        return "mdy"
    return _order_of({"d": written.find("22"), "m": written.find("11"), "y": written.find("03")})


def _order_of(found: Dict[str, int]) -> str:
    if any(position < 0 for position in found.values()):
        return "mdy"
    order = "".join(sorted(found, key=lambda part: found[part]))
    return order if order in ("dmy", "mdy", "ymd") else "mdy"


@functools.lru_cache(maxsize=1)
def system_date_order() -> str:
    """This machine's short-date order (probed once): ``"dmy"``, ``"mdy"`` or ``"ymd"``."""
    return _probe_date_order()


#: What :func:`parse_children` asks for the system's date order; tests replace it.
date_order_probe: Callable[[], str] = system_date_order


def _offset(text: str) -> tzinfo:
    """The fixed zone of an ISO offset: ``Z``, ``+02``, ``+0200``, ``-05:30``."""
    if text.upper() == "Z":
        return timezone.utc
    digits = text[1:].replace(":", "")
    hours, minutes, seconds = int(digits[0:2]), int(digits[2:4] or 0), int(digits[4:6] or 0)
    if minutes >= 60 or seconds >= 60:
        raise ValueError(f"invalid UTC offset {text!r}")
    delta = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    # timezone() itself refuses offsets of 24 hours or more.
    return timezone(-delta if text[0] == "-" else delta)


def _micro(fraction: Optional[str]) -> int:
    return int((fraction + "000000")[:6]) if fraction else 0


def _aware(naive: datetime, tz: Optional[tzinfo]) -> datetime:
    """A wall-clock time in *tz* (None: this machine's local time) as an aware time."""
    return naive.astimezone() if tz is None else naive.replace(tzinfo=tz)


def parse_time(
    text: str, *, order: Optional[str] = None, tz: Optional[tzinfo] = None
) -> Tuple[Optional[datetime], TimeStyle]:
    """Read a ``last_sync_time``; empty text means never synchronized.

    Accepted: ``MM/DD/YYYY[ HH:MM[:SS][ AM|PM]]`` (month, day and hour may have one
    digit; ``DD/MM/YYYY`` instead where the system's short date is day-first, and
    ``.`` or ``-`` between the parts too), ``YYYY-MM-DD[ HH:MM[:SS]]`` and ISO 8601 (``T``
    or space, fractional seconds, ``Z`` or ``+HH:MM`` offset, which any form may end
    with). Without an offset the time is local time.

    :param text: the time as written in the table.
    :param order: the system's date order (``"dmy"`` reads ``03/04`` as 3 April); None
        asks :data:`date_order_probe`.
    :param tz: the local time zone (None: this machine's).
    :returns: an aware datetime (None for empty text) and the style it was written in.
    :raises ValueError: the text is not a time in one of these forms.
    """
    text = text.strip()
    if not text:
        return None, DEFAULT_STYLE
    try:
        return _parse_time(text, order or date_order_probe(), tz)
    except (ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"unreadable date {text!r}") from exc


def _slashed(m: re.Match[str], day_first: bool, tz: Optional[tzinfo]) -> Tuple[datetime, TimeStyle]:
    first, sep, second, year, hour, minute, second_, fraction, meridiem, offset = m.groups()
    month, day = (second, first) if day_first else (first, second)
    h = int(hour) if hour is not None else 0
    if meridiem:
        if not 1 <= h <= 12:
            raise ValueError(f"hour {h} with {meridiem}")
        h = h % 12 + (12 if meridiem.upper() == "PM" else 0)
    naive = datetime(
        int(year),
        int(month),
        int(day),
        h,
        int(minute or 0),
        int(second_ or 0),
        _micro(fraction),
    )
    style = TimeStyle(
        form="dmy" if day_first else "mdy",
        seconds=second_ is not None,
        ampm=meridiem is not None,
        date_only=hour is None,
        padded=len(month) == 2 and len(day) == 2,
        offset=offset is not None,
        datesep=sep,
    )
    if offset is not None:
        return naive.replace(tzinfo=_offset(offset)), style
    return _aware(naive, tz), style


def _parse_time(text: str, order: str, tz: Optional[tzinfo]) -> Tuple[datetime, TimeStyle]:
    m = _SLASHED.fullmatch(text)
    if m:
        return _slashed(m, order == "dmy", tz)
    m = _YMD.fullmatch(text)
    if m:
        year, month, day, sep, hour, minute, second, fraction, offset = m.groups()
        value = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            _micro(fraction),
        )
        style = TimeStyle(
            form="ymd",
            sep="T" if sep and sep.upper() == "T" else " ",
            seconds=second is not None,
            offset=offset is not None,
            date_only=hour is None,
        )
        if offset is not None:
            return value.replace(tzinfo=_offset(offset)), style
        return _aware(value, tz), style
    raise ValueError("not a date")


def _spoken(moment: datetime) -> str:
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def _read_row_time(
    text: str, row: int, order: str
) -> Tuple[Optional[datetime], TimeStyle, Optional[RowMessage]]:
    """A row's time, its style, and a note: an ambiguous date names both readings
    (info); a date that cannot be read is an error for the row (docs/design.md §2)."""
    try:
        value, style = parse_time(text, order=order)
    except ValueError:
        other = _other_reading(text, order)
        hint = f"; read {other[0]} it would be {_spoken(other[1])}" if other else ""
        return (
            None,
            DEFAULT_STYLE,
            RowMessage(
                row,
                "error",
                f"Row {row}: last_sync_time {text.strip()!r} is not a date in this system's "
                f"format ({_FORMS.replace('MM/DD', 'DD/MM') if order == 'dmy' else _FORMS})"
                f"{hint}",
            ),
        )
    other = _other_reading(text, order)
    if value is None or other is None or other[1].date() == value.date():
        return value, style, None
    reading = "day-first" if order == "dmy" else "month-first"
    return (
        value,
        style,
        RowMessage(
            row,
            "info",
            f"Row {row}: last_sync_time {text.strip()!r} read {reading} as {_spoken(value)} "
            f"(this system's date format); read {other[0]} it would be {_spoken(other[1])}",
        ),
    )


def _other_reading(text: str, order: str) -> Optional[Tuple[str, datetime]]:
    """The other reading of a ``NN/NN/YYYY`` date (day-first on a month-first system,
    and the reverse), when it is a valid date."""
    m = _SLASHED.fullmatch(text.strip())
    if not m:
        return None
    day_first = order != "dmy"
    try:
        value = _slashed(m, day_first, timezone.utc)[0]
    except (ValueError, OverflowError):
        return None
    return ("day-first" if day_first else "month-first"), value


def _local(dt: datetime, tz: Optional[tzinfo]) -> datetime:
    """*dt* in local time (*tz*, or this machine's), to the second; naive is local."""
    if dt.tzinfo is None:
        dt = _aware(dt, tz)
    return (dt.astimezone() if tz is None else dt.astimezone(tz)).replace(microsecond=0)


def _ambiguous(local: datetime, tz: Optional[tzinfo]) -> bool:
    """Whether *local*'s wall-clock time happens twice (the hour repeated when daylight
    saving time ends): written without an offset it would read back as the first."""
    wall = local.replace(tzinfo=None)
    first, second = _aware(wall.replace(fold=0), tz), _aware(wall.replace(fold=1), tz)
    return first.utcoffset() != second.utcoffset()


def format_time(
    dt: datetime, style: TimeStyle = DEFAULT_STYLE, *, tz: Optional[tzinfo] = None
) -> str:
    """Write *dt* in local time, to the second, in *style* (always with seconds).

    A time in the hour repeated when daylight saving time ends carries its UTC offset
    (``2026-11-01 01:30:00-06:00``), as does any time of a row written with one, so
    that it reads back as the same moment.

    :param dt: an aware datetime, or a naive one taken as local time.
    :param style: the row's style from :func:`parse_time`.
    :param tz: the local time zone (None: this machine's).
    """
    local = _local(dt, tz)
    offset = ""
    if style.offset or _ambiguous(local, tz):
        offset = _offset_text(local.utcoffset() or timedelta(0))
    if style.form in ("mdy", "dmy"):
        if style.ampm:
            hour = local.hour % 12 or 12
            clock = f"{hour:02d}" if style.padded else str(hour)
            suffix = " AM" if local.hour < 12 else " PM"
        else:
            clock, suffix = f"{local.hour:02d}", ""
        first, second = (
            (local.day, local.month) if style.form == "dmy" else (local.month, local.day)
        )
        sep = style.datesep
        if style.padded:
            day = f"{first:02d}{sep}{second:02d}{sep}{local.year:04d}"
        else:
            day = f"{first}{sep}{second}{sep}{local.year:04d}"
        return f"{day} {clock}:{local.minute:02d}:{local.second:02d}{suffix}" + (
            f" {offset}" if offset else ""
        )
    text = (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}{style.sep}"
        f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    )
    return text + offset


def _offset_text(delta: timedelta) -> str:
    sign = "-" if delta < timedelta(0) else "+"
    seconds = abs(int(delta.total_seconds()))
    text = f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"
    if seconds % 60:
        text += f":{seconds % 60:02d}"
    return text


# --------------------------------------------------------------------------- text form


class _Token(NamedTuple):
    value: str
    start: int
    end: int
    quoted: bool  # the value started with a quote


class _RawRow(NamedTuple):
    row: int
    cells: List[str]
    text: str  # for messages: the row as written
    problem: Optional[str]  # the row cannot be split into columns


def _scan(text: str, row_separator: bool) -> List[Tuple[List[_Token], str, Optional[str]]]:
    """Split *text* into rows of tokens in one pass (quote-aware).

    Returns, per row (blank rows left out), its tokens, its stripped text and a problem
    (an unterminated quote) or None.
    """
    rows: List[Tuple[List[_Token], str, Optional[str]]] = []
    tokens: List[_Token] = []
    n = len(text)
    i = 0
    row_start = 0
    problem: Optional[str] = None
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n or (row_separator and text[i] == ";"):
            if tokens or problem:
                rows.append((tokens, text[row_start:i].strip(), problem))
            if i >= n:
                return rows
            i += 1
            row_start = i
            tokens, problem = [], None
            continue
        start = i
        quoted = text[i] == "'"
        buf: List[str] = []
        if quoted:
            i += 1
            while i < n:
                if text[i] == "'":
                    if i + 1 < n and text[i + 1] == "'":
                        buf.append("'")
                        i += 2
                        continue
                    break
                buf.append(text[i])
                i += 1
            if i >= n:
                # No closing quote: the rest of the text is this row.
                problem = f"unterminated quote in {text[start:].strip()!r}"
                rows.append((tokens, text[row_start:].strip(), problem))
                return rows
            i += 1
        while i < n and not text[i].isspace() and not (row_separator and text[i] == ";"):
            buf.append(text[i])
            i += 1
        tokens.append(_Token("".join(buf), start, i, quoted))


def _cells(tokens: List[_Token], text: str) -> List[str]:
    """The columns of one text row.

    The fourth, last column takes the rest of the row as written, spaces included,
    unless it starts with a quote (then each further value is a column too many).
    """
    if len(tokens) <= 3 or tokens[3].quoted:
        return [_unset(t) for t in tokens]
    fourth = tokens[3]
    last = text[fourth.start : tokens[-1].end]
    return [_unset(t) for t in tokens[:3]] + ["" if last == "#" else last]


def _unset(token: _Token) -> str:
    """arcpy writes an empty value-table cell as an unquoted ``#``."""
    return "" if token.value == "#" and not token.quoted else token.value


def _text_rows(text: str, row_separator: bool = True, first_row: int = 1) -> List[_RawRow]:
    rows: List[_RawRow] = []
    for offset, (tokens, row_text, problem) in enumerate(_scan(text, row_separator)):
        number = first_row + offset
        if problem:
            rows.append(_RawRow(number, [], row_text, problem))
            continue
        rows.append(_RawRow(number, _cells(tokens, text), row_text, None))
    return rows


# --------------------------------------------------------------------------- other forms


def _cell_text(value: object) -> str:
    """One cell as text: ``True`` -> ``true``, a datetime in the default style."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_time(value, DEFAULT_STYLE)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _list_row(number: int, item: object) -> Optional[_RawRow]:
    if isinstance(item, str):
        rows = _text_rows(item, row_separator=False, first_row=number)
        return rows[0] if rows else None
    if isinstance(item, (list, tuple)):
        cells = [_cell_text(v).strip() for v in item]
        if not any(cells):
            return None
        return _RawRow(number, cells, format_rows([cells]), None)
    return _RawRow(number, [], repr(item), f"not a row: {item!r}")


def _raw_rows(value: object) -> List[_RawRow]:
    """Every non-blank row of any accepted form, numbered."""
    if value is None:
        return []
    if isinstance(value, str):
        return _text_rows(value)
    export = getattr(value, "exportToString", None)
    if callable(export):
        return _text_rows(str(export() or ""))
    count = getattr(value, "rowCount", None)
    if isinstance(count, int):
        rows: List[_RawRow] = []
        get_row = getattr(value, "getRow", None)
        if callable(get_row):
            for r in range(count):
                row = _list_row(r + 1, str(get_row(r) or ""))
                if row is not None:
                    rows.append(row)
            return rows
        get_value = getattr(value, "getValue", None)
        if callable(get_value):
            columns = getattr(value, "columnCount", len(COLUMNS))
            for r in range(count):
                items = [get_value(r, c) for c in range(int(columns))]
                while len(items) > 3 and _cell_text(items[-1]).strip() == "":
                    items.pop()  # an empty trailing time is a 3-column row
                row = _list_row(r + 1, items)
                if row is not None:
                    rows.append(row)
            return rows
    if isinstance(value, (list, tuple)):
        rows = []
        for r, item in enumerate(value):
            row = _list_row(r + 1, item)
            if row is not None:
                rows.append(row)
        return rows
    raise ValueTableError([f"cannot read a value table from {type(value).__name__}"])


# --------------------------------------------------------------------------- checking


def _shown(url: str) -> str:
    """*url* for a message: as written, unless redaction hides a secret in it."""
    redacted = redact_url(url)
    return url if redacted.lower() == url.lower() else redacted


def _url_problem(url: str) -> Optional[str]:
    """Why *url* is not an http(s) URL with a host, or None."""
    if not url or any(c.isspace() for c in url):
        return "is not an http(s) URL"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "is not an http(s) URL"
    if not parts.hostname:
        return "has no host"
    return None


def _normalized_url(url: str) -> Optional[Tuple[str, str, str]]:
    """Scheme, host[:port] and path, compared case-insensitively; None if not a URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return scheme, host, parts.path.rstrip("/").casefold()


def _check(
    value: object, strict_connected: bool, parent_url: Optional[str] = None
) -> Tuple[List[ChildSpec], List[RowMessage], List[RowMessage]]:
    """Read *value*: the good rows as specs, one error message per problem, and the
    notes of every row (also of rows with errors)."""
    raw = _raw_rows(value)
    errors: List[RowMessage] = []
    specs: List[ChildSpec] = []
    if not raw:
        return specs, [RowMessage(None, "error", "no child repositories in the value table")], []
    parent = _normalized_url(parent_url) if parent_url else None
    seen: Dict[str, int] = {}
    order = date_order_probe()
    notes: List[RowMessage] = []
    for r in raw:
        problems = _row_problems(r, strict_connected, parent, seen, specs, order, notes)
        errors.extend(RowMessage(r.row, "error", f"Row {r.row}: {p}") for p in problems)
    return specs, errors, notes


def _row_problems(
    r: _RawRow,
    strict_connected: bool,
    parent: Optional[Tuple[str, str, str]],
    seen: Dict[str, int],
    specs: List[ChildSpec],
    order: str,
    notes: List[RowMessage],
) -> List[str]:
    """Check one row; append its spec to *specs* when it is good, return its problems."""
    if r.problem:
        return [r.problem]
    if not 3 <= len(r.cells) <= 4:
        return [f"expected 3 or 4 columns ({' '.join(COLUMNS)}), got {len(r.cells)}: {r.text!r}"]
    problems: List[str] = []
    cells = [c.strip() for c in r.cells]
    name, connected_text, url = cells[0], cells[1], cells[2]
    time_text = cells[3] if len(cells) == 4 else ""
    ok = True
    if not name:
        problems.append("the child repository name is empty")
        ok = False
    else:
        key = name.casefold()
        if key in seen:
            problems.append(f"child repository {name!r} is listed twice (also row {seen[key]})")
            ok = False
        else:
            seen[key] = r.row
    connected = connected_text.lower() == "true"
    if strict_connected and not connected:
        problems.append(f"connected is {connected_text!r}; only 'true' synchronizes this child")
    why = _url_problem(url)
    if why:
        problems.append(f"URL {_shown(url)!r} {why}{_unquoted_name_hint(r.text)}")
        ok = False
    elif parent is not None and _normalized_url(url) == parent:
        problems.append(f"URL {_shown(url)!r} is the parent repository's URL")
    last_sync, style, note = _read_row_time(time_text, r.row, order)
    if note and note.level == "error":
        # docs/design.md §2: a date that cannot be read is an error for its row, and an
        # invalid row refuses the whole run (a half-understood table never syncs).
        problems.append(note.text.split(": ", 1)[1])
        ok = False
    elif note:
        notes.append(note)
    if ok:
        specs.append(
            ChildSpec(
                row=r.row,
                name=name,
                connected=connected,
                connected_text=connected_text,
                url=url,
                last_sync=last_sync,
                time_text=time_text,
                time_style=style,
                notes=(note,) if note else (),
            )
        )
    return problems


def _unquoted_name_hint(text: str) -> str:
    """A hint when the row's URL seems to sit one or more words to the right: a name
    with spaces written without quotes (``New Ohio true http://...``)."""
    if text.lstrip().startswith("'"):
        return ""
    words = text.split()
    for index, word in enumerate(words):
        if re.match(r"https?://", word, re.IGNORECASE):
            if index >= 3:
                name = " ".join(words[: index - 1])
                return f" (a name with spaces must be in single quotes: '{name}')"
            return ""
    return ""


def parse_children(value: object) -> List[ChildSpec]:
    """Read the child value table.

    A ``connected`` other than ``true`` is not an error here: the spec has
    ``connected=False`` and the engine skips that child with a warning. A time that
    cannot be read is an error for its row (docs/design.md §2).

    :param value: value-table text, a list of lists/tuples, or a ValueTable-like object.
    :raises ValueTableError: listing every problem, each naming its row and value.
    """
    specs, errors, _ = _check(value, strict_connected=False)
    if errors:
        raise ValueTableError([m.text for m in errors])
    return specs


def validate_children(value: object, parent_url: Optional[str] = None) -> List[RowMessage]:
    """Check the child value table for the toolbox dialog; empty list when all is well.

    Besides :func:`parse_children`'s problems, a ``connected`` other than ``true`` and a
    URL equal to *parent_url* (scheme and host case-insensitive, path too, trailing
    slash ignored) are errors, as is a time that cannot be read.
    """
    try:
        errors, notes = _check(value, strict_connected=True, parent_url=parent_url)[1:]
    except ValueTableError as exc:
        return [RowMessage(None, "error", p) for p in exc.problems]
    warnings = [note for note in notes if note.level == "warning"]
    return sorted(errors + warnings, key=lambda m: (m.row or 0, m.level != "error"))


def rows_naming_parent(specs: Sequence[ChildSpec], parent_url: str, parent_name: str) -> List[str]:
    """The rows that name the parent repository itself, by name or by URL, one problem
    text each (the command line refuses such a table, as the dialog does)."""
    parent = _normalized_url(parent_url)
    problems = []
    for spec in specs:
        if spec.name.casefold() == parent_name.strip().casefold():
            problems.append(f"Row {spec.row}: {spec.name!r} is the parent repository itself")
        elif parent is not None and _normalized_url(spec.url) == parent:
            problems.append(
                f"Row {spec.row}: URL {_shown(spec.url)!r} is the parent repository's URL"
            )
    return problems


def row_count(text: str) -> int:
    """How many rows value-table *text* holds (blank rows not counted)."""
    return len(_text_rows(text))


def check_parent_url(url: str) -> Optional[str]:
    """A warning text when *url* does not look like a ``.../WMServer`` endpoint, else None."""
    why = _url_problem((url or "").strip())
    if why:
        return f"parent URL {_shown(url or '')!r} {why}"
    path = urlsplit(url.strip()).path.rstrip("/")
    if not path.lower().endswith("/wmserver"):
        return (
            f"parent URL {_shown(url)!r} does not end with /WMServer "
            "(expected .../arcgis/rest/services/<name>/WMServer)"
        )
    return None


# --------------------------------------------------------------------------- writing


def _needs_quotes(text: str) -> bool:
    # "#" first: an unquoted "#" is an empty cell, and a line starting with one is a
    # comment in a children file.
    return text.startswith("#") or "'" in text or ";" in text or any(c.isspace() for c in text)


def _is_date(text: str) -> bool:
    if not text or text != text.strip() or "'" in text or ";" in text:
        return False
    try:
        return parse_time(text)[0] is not None
    except ValueError:
        return False


def format_rows(rows: Sequence[Sequence[object]]) -> str:
    """Write rows as value-table text that :func:`parse_children` reads back unchanged.

    An empty value is written ``#``, as ``arcpy.ValueTable.exportToString`` writes it
    (and the toolbox's Last Synchronized output shows a never-synchronized child).
    Values that hold whitespace, ``;`` or ``'``, or start with ``#``, are single-quoted
    (``'`` is doubled inside); a date in the fourth, last column stays unquoted, as in
    Esri's sample (``... WMServer 2011-08-08 12:00``). Non-text values are written as
    when parsing (``True`` -> ``true``, a datetime as ``YYYY-MM-DD HH:MM:SS`` local time).
    """
    out: List[str] = []
    for row in rows:
        cells = [_cell_text(v) for v in row]
        words = []
        for index, cell in enumerate(cells):
            last_date = index == 3 and index == len(cells) - 1 and _is_date(cell)
            if not cell:
                words.append("#")
            elif _needs_quotes(cell) and not last_date:
                words.append("'" + cell.replace("'", "''") + "'")
            else:
                words.append(cell)
        out.append(" ".join(words))
    return ";".join(out)


def output_row(spec: ChildSpec, new_time: Optional[datetime]) -> List[str]:
    """The Last Synchronized row for *spec*: its four columns as text.

    :param new_time: the child's new last-sync time, written in the row's own style in
        local time; None keeps the row's old time text (failed or skipped child).
    """
    time_text = spec.time_text if new_time is None else format_time(new_time, spec.time_style)
    return [spec.name, spec.connected_text, spec.url, time_text]
