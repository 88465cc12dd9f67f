"""The child value table: text, lists and ValueTable-like objects; dates and time zones."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wmsync.errors import ValueTableError
from wmsync.valuetable import (
    DEFAULT_STYLE,
    ChildSpec,
    RowMessage,
    TimeStyle,
    check_parent_url,
    format_rows,
    format_time,
    output_row,
    parse_children,
    parse_time,
    validate_children,
)

pytestmark = pytest.mark.floor  # run again on ArcGIS Pro 3.0's library versions (.ci/run)

needs_tzset = pytest.mark.skipif(not hasattr(time, "tzset"), reason="time.tzset is POSIX only")

# POSIX TZ rules need no zoneinfo database.
NEW_YORK = "EST5EDT,M3.2.0,M11.1.0"
KOLKATA = "<+0530>-5:30"
UTC = timezone.utc

ESRI_SAMPLE = (
    "Ohio_Repository true http://ohioServer/arcgis/rest/services/SO/WMServer 2011-08-08 12:00;"
    "AZ_Repository true http://AZServer/arcgis/rest/services/AZ/WMServer 2011-08-08 12:00"
)
URL = "http://ohio/arcgis/rest/services/SO/WMServer"


def _set_tz(name):
    if name is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = name
    time.tzset()


@pytest.fixture(autouse=True, scope="module")
def new_york_time():
    """Every test runs in New York time (EDT in August, EST in January), then restores."""
    if not hasattr(time, "tzset"):
        yield
        return
    old = os.environ.get("TZ")
    _set_tz(NEW_YORK)
    yield
    _set_tz(old)


@pytest.fixture(autouse=True)
def month_first(monkeypatch):
    """Every test reads dates as a US system does, whatever this machine's locale."""
    import wmsync.valuetable

    monkeypatch.setattr(wmsync.valuetable, "date_order_probe", lambda: "mdy", raising=False)


@pytest.fixture
def tz():
    """Switch the local time zone inside one test; back to New York afterwards."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is POSIX only")
    yield _set_tz
    _set_tz(NEW_YORK)


def problems_of(value):
    with pytest.raises(ValueTableError) as info:
        parse_children(value)
    return info.value.problems


# --------------------------------------------------------------------------- text form


@needs_tzset
def test_esri_sample_parses_into_two_children():
    ohio, az = parse_children(ESRI_SAMPLE)
    assert (ohio.row, ohio.name, ohio.connected, ohio.connected_text) == (
        1,
        "Ohio_Repository",
        True,
        "true",
    )
    assert ohio.url == "http://ohioServer/arcgis/rest/services/SO/WMServer"
    assert ohio.time_text == "2011-08-08 12:00"
    # noon in New York in August is EDT, UTC-4
    assert ohio.last_sync == datetime(2011, 8, 8, 16, 0, tzinfo=UTC)
    assert ohio.last_sync.tzinfo is not None
    assert (az.row, az.name, az.url) == (
        2,
        "AZ_Repository",
        "http://AZServer/arcgis/rest/services/AZ/WMServer",
    )
    assert az.last_sync == ohio.last_sync


def test_quoted_values_trailing_separator_and_blank_rows():
    text = (
        "  'Ohio Repository' TRUE " + URL + " '08/01/2013 11:30:45' ;;  \n"
        "AZ true http://az/arcgis/rest/services/AZ/WMServer '';"
        " NM false http://nm/WMServer ;  "
    )
    ohio, az, nm = parse_children(text)
    assert (ohio.row, ohio.name, ohio.connected, ohio.connected_text) == (
        1,
        "Ohio Repository",
        True,
        "TRUE",
    )
    assert ohio.time_text == "08/01/2013 11:30:45"
    assert ohio.last_sync is not None
    assert ohio.last_sync.replace(tzinfo=None) == datetime(2013, 8, 1, 11, 30, 45)
    assert (az.row, az.time_text, az.last_sync, az.time_style) == (2, "", None, DEFAULT_STYLE)
    assert (nm.row, nm.connected, nm.last_sync) == (3, False, None)


def test_quotes_protect_separators_and_double_quote_is_a_quote():
    [spec] = parse_children("'Bob''s; child' true " + URL)
    assert spec.name == "Bob's; child"
    [spec] = parse_children("O'Hare true " + URL)  # a quote inside a value is literal
    assert spec.name == "O'Hare"


def test_last_column_keeps_unquoted_spaces_verbatim():
    [spec] = parse_children("A true " + URL + "   08/01/2013   11:30:45  AM ")
    assert spec.time_text == "08/01/2013   11:30:45  AM"
    assert spec.last_sync is not None
    assert spec.last_sync.replace(tzinfo=None) == datetime(2013, 8, 1, 11, 30, 45)


# --------------------------------------------------------------------------- other forms


@needs_tzset
def test_list_of_lists_with_python_values():
    naive = datetime(2024, 1, 15, 9, 30, 5, 999)
    aware = datetime(2024, 1, 15, 9, 30, 5, tzinfo=UTC)
    specs = parse_children(
        [
            ["A", True, "http://a/WMServer", naive],
            ("B", "true", "https://b:8443/arcgis/rest/services/B/WMServer"),
            ["C", False, "http://c/WMServer", aware],
            [
                "D",
                "TRUE",
                "http://d/WMServer",
                "",
            ],
            "E true http://e/WMServer 2011-08-08",
            [],  # blank rows are ignored but still count in the numbering
            ["F", "true", "http://f/WMServer", None],
        ]
    )
    a, b, c, d, e, f = specs
    assert (a.connected, a.connected_text, a.time_text) == (True, "true", "2024-01-15 09:30:05")
    assert a.last_sync == datetime(2024, 1, 15, 14, 30, 5, tzinfo=UTC)  # EST, UTC-5
    assert a.time_style == TimeStyle(form="ymd", sep=" ", seconds=True)
    assert (b.row, b.last_sync, b.time_text) == (2, None, "")
    assert (c.connected, c.connected_text, c.time_text) == (False, "false", "2024-01-15 04:30:05")
    assert c.last_sync == aware
    assert d.connected and d.last_sync is None
    assert (e.row, e.name, e.time_style.date_only) == (5, "E", True)
    assert (f.row, f.last_sync) == (7, None)


class ExportingTable:
    """A ValueTable that exports its text; getRow must not be used then."""

    rowCount = 2

    def exportToString(self):
        return ESRI_SAMPLE

    def getRow(self, i):
        raise AssertionError("exportToString should be preferred")


class RowTable:
    """A ValueTable without exportToString: rows as text."""

    def __init__(self, rows):
        self.rows = rows
        self.rowCount = len(rows)

    def getRow(self, i):
        return self.rows[i]


class CellTable:
    """A ValueTable with cell access only; a Date column gives datetime objects."""

    columnCount = 4

    def __init__(self, rows):
        self.rows = rows
        self.rowCount = len(rows)

    def getValue(self, r, c):
        return self.rows[r][c]


def test_valuetable_export_to_string():
    specs = parse_children(ExportingTable())
    assert [s.name for s in specs] == ["Ohio_Repository", "AZ_Repository"]
    assert specs[1].time_text == "2011-08-08 12:00"


def test_valuetable_get_row():
    table = RowTable(
        [
            "Ohio true " + URL + " '08/01/2013 11:30:45'",
            "'Arizona Child' true http://az/WMServer 2011-08-08 12:00",
            "",
            "NM yes http://nm/WMServer",
        ]
    )
    ohio, az, nm = parse_children(table)
    assert ohio.time_text == "08/01/2013 11:30:45"
    assert (az.name, az.time_text) == ("Arizona Child", "2011-08-08 12:00")
    assert (nm.row, nm.connected, nm.connected_text) == (4, False, "yes")


@needs_tzset
def test_valuetable_get_value_with_date_objects():
    table = CellTable(
        [
            ["Ohio", True, URL, datetime(2013, 8, 1, 23, 30, 45)],
            ["AZ", "true", "http://az/WMServer", ""],
        ]
    )
    ohio, az = parse_children(table)
    assert ohio.time_text == "2013-08-01 23:30:45"
    assert ohio.last_sync == datetime(2013, 8, 2, 3, 30, 45, tzinfo=UTC)
    assert az.last_sync is None


def test_valuetable_problems_name_rows():
    table = RowTable(["A true ftp://a/WMServer", "B true http:///WMServer 31/12/2020"])
    problems = problems_of(table)
    assert problems[0].startswith("Row 1:") and "ftp://a/WMServer" in problems[0]
    assert problems[1].startswith("Row 2:") and "http:///WMServer" in problems[1]


def test_unreadable_value_is_an_error():
    assert "int" in problems_of(42)[0]
    assert validate_children(42)[0].level == "error"


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("text", "naive", "style"),
    [
        (
            "08/01/2013 11:30:45",
            datetime(2013, 8, 1, 11, 30, 45),
            TimeStyle(form="mdy", seconds=True),
        ),
        ("08/01/2013 11:30", datetime(2013, 8, 1, 11, 30), TimeStyle(form="mdy", seconds=False)),
        (
            "08/01/2013 11:30:45 PM",
            datetime(2013, 8, 1, 23, 30, 45),
            TimeStyle(form="mdy", ampm=True),
        ),
        (
            "8/1/2013 2:05 pm",
            datetime(2013, 8, 1, 14, 5),
            TimeStyle(form="mdy", seconds=False, ampm=True, padded=False),
        ),
        (
            "08/01/2013 12:00 AM",
            datetime(2013, 8, 1, 0, 0),
            TimeStyle(form="mdy", seconds=False, ampm=True),
        ),
        (
            "08/01/2013 12:59:59 AM",
            datetime(2013, 8, 1, 0, 59, 59),
            TimeStyle(form="mdy", ampm=True),
        ),
        (
            "08/01/2013 12:00 PM",
            datetime(2013, 8, 1, 12, 0),
            TimeStyle(form="mdy", seconds=False, ampm=True),
        ),
        (
            "08/01/2013 11:59:59PM",
            datetime(2013, 8, 1, 23, 59, 59),
            TimeStyle(form="mdy", ampm=True),
        ),
        ("08/01/2013", datetime(2013, 8, 1), TimeStyle(form="mdy", seconds=False, date_only=True)),
        ("2011-08-08 12:00", datetime(2011, 8, 8, 12, 0), TimeStyle(seconds=False)),
        ("2011-08-08 12:00:07", datetime(2011, 8, 8, 12, 0, 7), TimeStyle()),
        ("2011-08-08T12:00:00", datetime(2011, 8, 8, 12, 0), TimeStyle(sep="T")),
        ("2011-08-08T12:00:00.25", datetime(2011, 8, 8, 12, 0, 0, 250000), TimeStyle(sep="T")),
        ("2011-08-08", datetime(2011, 8, 8), TimeStyle(seconds=False, date_only=True)),
    ],
)
@needs_tzset
def test_local_date_forms(text, naive, style):
    value, got_style = parse_time(text)
    assert got_style == style
    assert value is not None and value.utcoffset() is not None
    assert value.replace(tzinfo=None) == naive  # local wall time kept
    assert value == naive.astimezone()  # ... and it is this machine's local time


@pytest.mark.parametrize(
    ("text", "expected", "sep"),
    [
        ("2011-08-08T12:00:00Z", datetime(2011, 8, 8, 12, 0, tzinfo=UTC), "T"),
        ("2011-08-08t12:00:00z", datetime(2011, 8, 8, 12, 0, tzinfo=UTC), "T"),
        ("2011-08-08T12:00:00+02:00", datetime(2011, 8, 8, 10, 0, tzinfo=UTC), "T"),
        (
            "2011-08-08T12:00:00.123456-05:30",
            datetime(2011, 8, 8, 17, 30, 0, 123456, tzinfo=UTC),
            "T",
        ),
        ("2011-08-08 12:00+0200", datetime(2011, 8, 8, 10, 0, tzinfo=UTC), " "),
        ("2011-08-08T12:00:00+02", datetime(2011, 8, 8, 10, 0, tzinfo=UTC), "T"),
    ],
)
def test_iso_with_offset(text, expected, sep):
    value, style = parse_time(text)
    assert value == expected
    assert style.offset and style.sep == sep and style.form == "ymd"


@pytest.mark.parametrize(
    "text",
    [
        "08/01/2013 00:30 AM",  # no hour 0 on a 12-hour clock
        "08/01/2013 13:00 PM",
        "13/01/2013",  # month 13
        "02/30/2013",
        "2011-08-08 24:00",
        "2011-08-08 12:60",
        "2011-8-8 12:00",
        "08/01/13",  # two-digit year
        "2011-08-08T12:00:00+25:00",
        "2011-08-08T12:00:00+02:75",
        "yesterday",
        "2011-08-08 12:00 AM",
        "\uff12\uff10\uff11\uff11-08-08",  # fullwidth digits: int() would take them
        "0001-01-01",  # out of range once converted to local time
    ],
)
def test_unreadable_dates(text):
    with pytest.raises(ValueError, match="unreadable date"):
        parse_time(text)


def test_empty_time_means_never_synchronized():
    assert parse_time("") == (None, DEFAULT_STYLE)
    assert parse_time("   ") == (None, DEFAULT_STYLE)


def test_times_without_offset_are_local_time(tz):
    text = "2011-01-15 12:00"
    tz("UTC0")
    assert parse_time(text)[0] == datetime(2011, 1, 15, 12, 0, tzinfo=UTC)
    tz(NEW_YORK)
    assert parse_time(text)[0] == datetime(2011, 1, 15, 17, 0, tzinfo=UTC)  # EST
    assert parse_time("2011-07-15 12:00")[0] == datetime(2011, 7, 15, 16, 0, tzinfo=UTC)  # EDT
    tz(KOLKATA)
    assert parse_time(text)[0] == datetime(2011, 1, 15, 6, 30, tzinfo=UTC)
    # an explicit offset does not depend on the machine
    assert parse_time("2011-01-15T12:00:00Z")[0] == datetime(2011, 1, 15, 12, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- format_time

# 2024-03-05 19:04:09.75 UTC is 14:04:09 EST in New York.
INSTANT = datetime(2024, 3, 5, 19, 4, 9, 750000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("row_time", "written"),
    [
        ("2011-08-08 12:00", "2024-03-05 14:04:09"),  # seconds added, never lost
        ("2011-08-08 12:00:00", "2024-03-05 14:04:09"),
        ("2011-08-08", "2024-03-05 14:04:09"),
        ("2011-08-08T12:00:00", "2024-03-05T14:04:09"),
        ("2011-08-08T12:00:00+02:00", "2024-03-05T14:04:09-05:00"),  # local offset
        ("2011-08-08T12:00:00Z", "2024-03-05T14:04:09-05:00"),
        ("2011-08-08 12:00:00.5+02:00", "2024-03-05 14:04:09-05:00"),
        ("08/01/2013 11:30:45", "03/05/2024 14:04:09"),
        ("08/01/2013 11:30", "03/05/2024 14:04:09"),
        ("08/01/2013 11:30:45 AM", "03/05/2024 02:04:09 PM"),
        ("8/1/2013 11:30 AM", "3/5/2024 2:04:09 PM"),
        ("08/01/2013", "03/05/2024 14:04:09"),
        ("", "2024-03-05 14:04:09"),
    ],
)
@needs_tzset
def test_format_time_keeps_the_row_style(row_time, written):
    _, style = parse_time(row_time)
    assert format_time(INSTANT, style) == written
    # and what is written reads back as the same instant, to the second
    assert parse_time(written)[0] == INSTANT.replace(microsecond=0)


@pytest.mark.parametrize(
    ("hour", "written"),
    [
        (0, "12:00:00 AM"),
        (1, "01:00:00 AM"),
        (11, "11:00:00 AM"),
        (12, "12:00:00 PM"),
        (13, "01:00:00 PM"),
        (23, "11:00:00 PM"),
    ],
)
def test_format_time_twelve_hour_clock(hour, written):
    style = parse_time("01/01/2020 01:00:00 AM")[1]
    assert format_time(datetime(2020, 1, 1, hour), style) == "01/01/2020 " + written


@needs_tzset
def test_format_time_naive_is_local_and_default_style():
    assert format_time(datetime(2024, 7, 1, 8, 9, 10, 999999)) == "2024-07-01 08:09:10"
    offset_style = parse_time("2011-08-08T12:00:00Z")[1]
    assert format_time(datetime(2024, 7, 1, 8, 9, 10), offset_style) == "2024-07-01T08:09:10-04:00"


def test_format_time_half_hour_offset(tz):
    tz(KOLKATA)
    style = parse_time("2011-08-08T12:00:00Z")[1]
    assert format_time(datetime(2024, 1, 1, tzinfo=UTC), style) == "2024-01-01T05:30:00+05:30"
    tz("<-0330>3:30")
    assert format_time(datetime(2024, 1, 1, tzinfo=UTC), style) == "2023-12-31T20:30:00-03:30"


# --------------------------------------------------------------------------- bad rows


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("A true " + URL + ";B true", ["Row 2:", "got 2", "B true"]),
        ("A true " + URL + ";Bonly", ["Row 2:", "got 1", "Bonly"]),
        ("A true " + URL + " '2011-08-08' extra", ["Row 1:", "got 5", "extra"]),
        ("'' true " + URL, ["Row 1:", "name is empty"]),
        ("A true ftp://a/WMServer", ["Row 1:", "'ftp://a/WMServer'", "http"]),
        ("A true http:///WMServer", ["Row 1:", "'http:///WMServer'", "host"]),
        ("A true ohio/WMServer", ["Row 1:", "'ohio/WMServer'"]),
        ("A true http://a:port/WMServer", ["Row 1:", "'http://a:port/WMServer'"]),
        ("A true " + URL + " 2011-13-08", ["Row 1:", "'2011-13-08'", "not a date"]),
        ("A true " + URL + " 08/01/2013 13:00 PM", ["Row 1:", "'08/01/2013 13:00 PM'"]),
        ("A true " + URL + ";B true " + URL + " 'oops", ["Row 2:", "unterminated quote", "oops"]),
    ],
)
def test_bad_row_names_row_and_value(text, fragments):
    problems = problems_of(text)
    assert len(problems) == 1, problems
    for fragment in fragments:
        assert fragment in problems[0]


def test_list_rows_with_wrong_column_count():
    problems = problems_of([["A", "true"], ["B", True, URL, "", "extra"], 7])
    assert problems[0].startswith("Row 1:") and "got 2" in problems[0]
    assert problems[1].startswith("Row 2:") and "got 5" in problems[1] and "extra" in problems[1]
    assert problems[2].startswith("Row 3:") and "7" in problems[2]


def test_every_problem_is_listed_at_once():
    text = ";".join(
        [
            "Good true " + URL,
            "Bad1 true ftp://x/WMServer",
            "Bad2 true http://b/WMServer 99/99/9999",
            "good TRUE http://c/WMServer",  # duplicate of row 1
            "'' maybe http://d/WMServer",
        ]
    )
    problems = problems_of(text)
    assert [p.split(":")[0] for p in problems] == ["Row 2", "Row 3", "Row 4", "Row 5"]
    assert "'good'" in problems[2] and "row 1" in problems[2]
    with pytest.raises(ValueError):  # ValueTableError is also a ValueError
        parse_children(text)


def test_duplicate_names_are_case_insensitive():
    problems = problems_of(
        [["Ohio", "true", URL], ["AZ", "true", URL], ["OHIO", "true", URL], ["ohio", "x", URL]]
    )
    assert problems == [
        "Row 3: child repository 'OHIO' is listed twice (also row 1)",
        "Row 4: child repository 'ohio' is listed twice (also row 1)",
    ]


@pytest.mark.parametrize("value", ["", "   ", " ; ;", None, [], [[], ["", " "]], RowTable([])])
def test_empty_table(value):
    assert problems_of(value) == ["no child repositories in the value table"]
    assert validate_children(value) == [
        RowMessage(None, "error", "no child repositories in the value table")
    ]


def test_messages_never_show_a_token():
    problems = problems_of("A true ftp://h/WMServer?token=SECRET123")
    assert "SECRET123" not in problems[0] and "ftp://h/WMServer" in problems[0]


# --------------------------------------------------------------------------- validation


def test_validate_children_accepts_a_good_table():
    assert validate_children(ESRI_SAMPLE, "http://hq/arcgis/rest/services/Parent/WMServer") == []


@pytest.mark.parametrize("flag", ["false", "yes", "1", "''"])
def test_validate_children_connected_must_be_true(flag):
    messages = validate_children("A true " + URL + ";B " + flag + " http://b/WMServer")
    shown = "''" if flag == "''" else repr(flag)
    assert messages == [
        RowMessage(2, "error", f"Row 2: connected is {shown}; only 'true' synchronizes this child")
    ]
    # parse_children accepts the row as a disconnected child
    assert [s.connected for s in parse_children("B " + flag + " http://b/WMServer")] == [False]


@pytest.mark.parametrize(
    "child_url",
    [
        "http://hq/arcgis/rest/services/Parent/WMServer",
        "HTTP://HQ/arcgis/rest/services/parent/wmserver/",
        "http://hq:80/arcgis/rest/services/Parent/WMServer",
    ],
)
def test_validate_children_refuses_the_parent_url(child_url):
    parent = "http://hq/arcgis/rest/services/Parent/WMServer/"
    messages = validate_children([["A", "true", URL], ["Self", "true", child_url]], parent)
    assert len(messages) == 1
    assert messages[0].row == 2 and messages[0].level == "error"
    assert "parent" in messages[0].text and child_url in messages[0].text
    assert parse_children([["Self", "true", child_url]])  # not parse_children's concern


def test_validate_children_other_host_or_port_is_not_the_parent():
    parent = "http://hq/arcgis/rest/services/Parent/WMServer"
    table = [
        ["A", "true", "https://hq/arcgis/rest/services/Parent/WMServer"],
        ["B", "true", "http://hq:8080/arcgis/rest/services/Parent/WMServer"],
    ]
    assert validate_children(table, parent) == []


def test_validate_children_lists_every_error_by_row():
    messages = validate_children("A yes ftp://a;A true http://b/WMServer bad-date")
    assert [(m.row, m.level) for m in messages] == [(1, "error")] * 2 + [(2, "error")] * 2
    assert "'yes'" in messages[0].text and "'ftp://a'" in messages[1].text
    assert "twice" in messages[2].text and "'bad-date'" in messages[3].text


@pytest.mark.parametrize(
    "url",
    [
        "http://hq/arcgis/rest/services/Parent/WMServer",
        "https://hq:6443/arcgis/rest/services/Parent/wmserver/",
    ],
)
def test_check_parent_url_good(url):
    assert check_parent_url(url) is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://hq/arcgis/rest/services/Parent/WMServer", "http"),
        ("http:///arcgis/rest/services/Parent/WMServer", "host"),
        ("http://hq/arcgis/rest/services/Parent/MapServer", "/WMServer"),
        ("http://hq/arcgis/rest/services/Parent/WMServerX", "/WMServer"),
        ("", "http"),
    ],
)
def test_check_parent_url_warns(url, fragment):
    warning = check_parent_url(url)
    assert warning is not None and fragment in warning and repr(url) in warning


# --------------------------------------------------------------------------- writing


def test_format_rows_quoting():
    text = format_rows(
        [
            ["Ohio Repository", "true", URL, "08/01/2013 11:30:45 AM"],
            ["AZ", True, "http://az/WMServer", ""],
            ["Bob's;x", "false", "http://b/WMServer"],
            ["NM", "true", "http://nm/WMServer", "not a date"],
        ]
    )
    assert text == (
        f"'Ohio Repository' true {URL} 08/01/2013 11:30:45 AM;"
        "AZ true http://az/WMServer #;"
        "'Bob''s;x' false http://b/WMServer;"
        "NM true http://nm/WMServer 'not a date'"
    )


def test_format_rows_writes_the_esri_sample_back():
    specs = parse_children(ESRI_SAMPLE)
    assert format_rows([output_row(s, None) for s in specs]) == ESRI_SAMPLE


def test_output_row_keeps_style_and_old_time():
    ohio, us, never = parse_children(
        [
            ["Ohio", "True", URL, "2011-08-08 12:00"],
            ["US", "true", "http://us/WMServer", "8/1/2013 11:30 AM"],
            ["Never", "true", "http://n/WMServer"],
        ]
    )
    assert output_row(ohio, None) == ["Ohio", "True", URL, "2011-08-08 12:00"]
    new = datetime(2024, 3, 5, 14, 4, 9)  # naive: local time
    assert output_row(ohio, new) == ["Ohio", "True", URL, "2024-03-05 14:04:09"]
    assert output_row(us, new)[3] == "3/5/2024 2:04:09 PM"
    assert output_row(never, None) == ["Never", "true", "http://n/WMServer", ""]
    assert output_row(never, new)[3] == "2024-03-05 14:04:09"


def test_thousand_rows_are_quick():
    rows = [
        [
            f"Child {i}",
            "true",
            f"http://host{i}/arcgis/rest/services/C{i}/WMServer",
            "08/01/2013 11:30:45 PM",
        ]
        for i in range(1000)
    ]
    started = time.perf_counter()
    text = format_rows(rows)
    specs = parse_children(text)
    assert validate_children(text) == []
    elapsed = time.perf_counter() - started
    assert len(specs) == 1000 and specs[-1].name == "Child 999" and specs[-1].row == 1000
    assert elapsed < 2.0
    problems = problems_of([*rows, ["child 0", "true", "http://x/WMServer"]])
    assert problems == ["Row 1001: child repository 'child 0' is listed twice (also row 1)"]


# --------------------------------------------------------------------------- round trip

_ANY_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=12,
)
_NAMES = _ANY_TEXT.filter(lambda s: s.strip() != "")
_CONNECTED = st.one_of(st.sampled_from(["true", "TRUE", "True", "false", "yes", ""]), _ANY_TEXT)
_URLS = st.builds(
    "{}://{}/arcgis/rest/services/{}/WMServer".format,
    st.sampled_from(["http", "https", "HTTP"]),
    st.from_regex(r"[a-z][a-z0-9.-]{0,10}(:[0-9]{2,4})?", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_%~-]{1,8}", fullmatch=True),
)
_INSTANTS = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1))
_STYLES = st.sampled_from(
    [
        parse_time(t, order="mdy")[1]
        for t in [
            "2011-08-08 12:00",
            "2011-08-08T12:00:00Z",
            "2011-08-08T12:00:00",
            "08/01/2013 11:30:45 AM",
            "8/1/2013 1:30 PM",
            "08/01/2013",
            "2011-08-08",
        ]
    ]
)
_TIMES = st.one_of(
    st.builds(format_time, _INSTANTS, _STYLES),
    st.sampled_from(
        [
            "",
            " ",
            "2011-08-08 12:00",
            "08/01/2013  11:30:45   am",
            "2011-08-08T12:00:00.5+02:00",
            "2011-08-08\t12:00",
        ]
    ),
)
_ROWS = st.lists(
    st.tuples(_NAMES, _CONNECTED, _URLS, st.one_of(st.none(), _TIMES)).map(
        lambda r: [c for c in r if c is not None]
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda r: r[0].strip().casefold(),
)


@settings(max_examples=100, deadline=None)
@given(_ROWS)
def test_format_rows_round_trips(rows):
    expected = parse_children(rows)
    assert [s.name for s in expected] == [r[0].strip() for r in rows]
    assert parse_children(format_rows(rows)) == expected
    # and the Last Synchronized rows read back as the same children
    out = [output_row(s, None) for s in expected]
    assert parse_children(format_rows(out)) == expected


@settings(max_examples=100, deadline=None)
@given(_INSTANTS.map(lambda d: d.replace(microsecond=0)), _STYLES)
def test_format_time_reads_back(instant, style):
    written = format_time(instant, style)
    value, written_style = parse_time(written)
    assert value == instant.astimezone()
    assert written_style.form == style.form and written_style.offset == style.offset


def test_child_spec_is_frozen():
    [spec] = parse_children("A true " + URL)
    assert isinstance(spec, ChildSpec)
    with pytest.raises(AttributeError):
        spec.name = "B"  # type: ignore[misc]


def test_an_unquoted_hash_is_an_empty_cell_as_arcpy_writes_it():
    from wmsync.valuetable import parse_children

    specs = parse_children(
        "Ohio true http://o/arcgis/rest/services/O/WMServer #;"
        "'#' true http://a/arcgis/rest/services/A/WMServer"
    )
    assert specs[0].last_sync is None and specs[0].time_text == ""
    assert specs[1].name == "#"  # quoted, it is a value
    import pytest

    from wmsync.errors import ValueTableError

    with pytest.raises(ValueTableError, match="Row 1: the child repository name is empty"):
        parse_children("# true http://o/arcgis/rest/services/O/WMServer")


# --------------------------------------------------------------------------- issue 15


def day_first(monkeypatch):
    import wmsync.valuetable

    monkeypatch.setattr(wmsync.valuetable, "date_order_probe", lambda: "dmy")


@needs_tzset
def test_a_day_first_system_reads_a_slashed_date_day_first_and_writes_it_back(monkeypatch):
    day_first(monkeypatch)
    [spec] = parse_children("Ohio true " + URL + " 03/04/2026 10:15")
    assert spec.last_sync == datetime(2026, 4, 3, 10, 15).astimezone()  # 3 April
    assert spec.time_style.form == "dmy"
    assert output_row(spec, datetime(2026, 5, 7, 14, 4, 9))[3] == "07/05/2026 14:04:09"
    # German style dots are read and written back the same way
    [dots] = parse_children("Ohio true " + URL + " 3.4.2026 10:15")
    assert dots.last_sync == spec.last_sync
    assert output_row(dots, datetime(2026, 5, 7, 14, 4, 9))[3] == "7.5.2026 14:04:09"


@pytest.mark.parametrize(
    ("order", "reading", "other"),
    [
        ("dmy", "read day-first as 3 April 2026", "read month-first it would be 4 March 2026"),
        ("mdy", "read month-first as 4 March 2026", "read day-first it would be 3 April 2026"),
    ],
)
def test_an_ambiguous_date_names_both_readings(monkeypatch, order, reading, other):
    import wmsync.valuetable

    monkeypatch.setattr(wmsync.valuetable, "date_order_probe", lambda: order)
    [spec] = parse_children("Ohio true " + URL + " 03/04/2026 10:15")
    [note] = spec.notes
    assert note.level == "info" and note.row == 1
    assert reading in note.text and other in note.text and "'03/04/2026 10:15'" in note.text
    [plain] = parse_children("Ohio true " + URL + " 04/04/2026 10:15")
    assert plain.notes == ()  # both readings are the same day


@pytest.mark.parametrize(
    ("written", "order"),
    [
        ("22/11/2003", "dmy"),
        ("22.11.03", "dmy"),
        ("11/22/03", "mdy"),
        ("11/22/2003", "mdy"),
        ("2003-11-22", "ymd"),
        ("2003/11/22", "ymd"),
        ("Sat Nov 22", "mdy"),
    ],
)
def test_the_locale_probe_reads_the_order_of_the_systems_short_date(monkeypatch, written, order):
    import wmsync.valuetable as vt

    monkeypatch.setattr(vt.sys, "platform", "linux")
    monkeypatch.setattr(vt.time, "strftime", lambda fmt, t: written)
    assert vt._probe_date_order() == order


def test_an_unreadable_date_refuses_the_table_naming_the_row_and_the_other_reading():
    # docs/design.md section 2: a date that cannot be read is an error for its row, and
    # an invalid row refuses the whole run.
    with pytest.raises(ValueTableError) as refused:
        parse_children(
            "Ohio true " + URL + " 31/12/2020 10:00;AZ true http://az/WMServer yesterday"
        )
    first, second = refused.value.problems
    assert first.startswith("Row 1:") and "'31/12/2020 10:00'" in first
    assert "31 December 2020" in first  # the day-first reading is named as a hint
    assert second.startswith("Row 2:") and "'yesterday'" in second
    assert [m.level for m in validate_children("Ohio true " + URL + " 31/12/2020")] == ["error"]


CHICAGO_RULE = "CST6CDT,M3.2.0,M11.1.0"
# 2026-11-01 01:30 happens twice in Chicago: CDT (06:30 UTC), then CST (07:30 UTC).
FIRST_0130 = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
SECOND_0130 = datetime(2026, 11, 1, 7, 30, tzinfo=UTC)
# the styles of rows written like these (the last one on a day-first system)
STYLED = [
    ("", "mdy"),
    ("11/01/2026 01:30 AM", "mdy"),
    ("2026-11-01T01:30", "mdy"),
    ("01/11/2026 01:30", "dmy"),
]


@pytest.mark.parametrize(("styled", "order"), STYLED)
@pytest.mark.parametrize("instant", [FIRST_0130, SECOND_0130])
def test_a_time_in_the_repeated_hour_reads_back_exactly(instant, styled, order):
    from zoneinfo import ZoneInfo

    style = parse_time(styled, order=order)[1]
    chicago = ZoneInfo("America/Chicago")
    written = format_time(instant, style, tz=chicago)
    assert written.endswith("-05:00" if instant == FIRST_0130 else "-06:00")
    assert parse_time(written, order=style.form, tz=chicago)[0] == instant
    # an hour that happens once is written as before, without an offset
    plain = format_time(instant + timedelta(days=1), style, tz=chicago)
    assert "-0" not in plain.split(" ", 1)[-1].split("T")[-1]


def test_the_repeated_hour_reads_back_in_this_machines_own_zone(tz):
    tz(CHICAGO_RULE)
    for instant in (FIRST_0130, SECOND_0130):
        [spec] = parse_children([["Ohio", "true", URL, "2026-10-01 12:00"]])
        text = output_row(spec, instant)[3]
        assert parse_children([["Ohio", "true", URL, text]])[0].last_sync == instant, text


def test_an_empty_time_is_written_as_the_toolbox_writes_it():
    import importlib.util
    import sys as _sys
    from pathlib import Path

    fake = Path(__file__).parent / "fake_arcpy"
    spec = importlib.util.spec_from_file_location("_fake_arcpy_check", fake / "_arcpy.py")
    module = importlib.util.module_from_spec(spec)
    _sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        table = module.ValueTable(["child_repository", "connected", "URL", "last_sync_time"])
        table.addRow(["Never", "true", "http://n/WMServer", ""])
        toolbox_text = table.exportToString()
    finally:
        _sys.modules.pop(spec.name, None)
    assert format_rows([["Never", "true", "http://n/WMServer", ""]]) == toolbox_text
    assert toolbox_text == "Never true http://n/WMServer #"


def test_a_name_starting_with_a_hash_is_quoted():
    text = format_rows([["#7 Office", "true", URL, ""], ["#8", "true", URL, ""]])
    assert text == f"'#7 Office' true {URL} #;'#8' true {URL} #"
    assert [s.name for s in parse_children(text)] == ["#7 Office", "#8"]


def test_an_unquoted_name_with_a_space_gets_a_hint_to_quote_it():
    problem, *_ = problems_of("New Ohio true " + URL + " 2011-08-08 12:00")
    assert "a name with spaces must be in single quotes: 'New Ohio'" in problem
    [problem] = problems_of("A true notaurl")
    assert "quotes" not in problem


def test_rows_naming_the_parent_itself():
    from wmsync.valuetable import rows_naming_parent

    parent = "http://hq/arcgis/rest/services/Parent/WMServer"
    specs = parse_children(
        f"Ohio true {URL};parent true http://x/WMServer;"
        "Copy true HTTP://HQ/arcgis/rest/services/Parent/wmserver/"
    )
    problems = rows_naming_parent(specs, parent, "Parent")
    assert len(problems) == 2
    assert problems[0].startswith("Row 2:") and "parent repository itself" in problems[0]
    assert problems[1].startswith("Row 3:") and "parent repository's URL" in problems[1]
