"""Stock replica pieces without servers: where the state store lives, how a stock
server's repository name is found, provenance tags and job views."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from wmsync.errors import RepositoryError
from wmsync.model import Element
from wmsync.stock import StateStore, default_state_path, service_name, views


def test_state_path_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WMSYNC_STATE", str(tmp_path / "x.sqlite"))
    assert default_state_path() == tmp_path / "x.sqlite"


def test_state_path_default_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WMSYNC_STATE", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_path() == tmp_path / "WorkflowSync" / "state.sqlite"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_path() == tmp_path / "home" / ".local" / "state" / "WorkflowSync" / (
        "state.sqlite"
    )


def test_state_path_on_windows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WMSYNC_STATE", raising=False)
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path))
    assert default_state_path() == tmp_path / "WorkflowSync" / "state.sqlite"


def test_state_store_is_wal_and_keeps_one_shadow_per_name(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s" / "state.sqlite")
    one = store.shadow("Ohio", "http://h/arcgis/rest/services/Ohio/WMServer")
    again = StateStore(tmp_path / "s" / "state.sqlite").shadow("OHIO", "http://h2/x")
    assert one.path == again.path and again.repository == "Ohio"
    other = store.shadow("Texas", "http://h/arcgis/rest/services/Texas/WMServer")
    assert other.path != one.path
    conn = sqlite3.connect(str(tmp_path / "s" / "state.sqlite"))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


@pytest.mark.parametrize(
    "url, name",
    [
        (
            "https://gis.example.com/arcgis/rest/services/Ohio_Repository/WMServer",
            "Ohio_Repository",
        ),
        ("https://gis.example.com/arcgis/rest/services/Folder/Ohio/WMServer/", "Ohio"),
        ("http://127.0.0.1:8080/arcgis/rest/services/P/wmserver", "P"),
    ],
)
def test_service_name_from_the_url(url: str, name: str) -> None:
    assert service_name(url) == name


def test_a_url_without_a_service_name_is_refused() -> None:
    with pytest.raises(RepositoryError, match="services/<name>/WMServer"):
        service_name("https://gis.example.com/wm")


def _hold(comment: str) -> Element:
    return Element(
        kind="Hold",
        guid="11111111-2222-3333-4444-555555555555",
        vv={"P": 1},
        modified=1_764_000_000_000,
        origin="Parent Repo",
        fields={"job": "aaaaaaaa-2222-3333-4444-555555555555", "holdComments": comment},
    )


@pytest.mark.parametrize("comment", ["", "waiting for data", "line 1\nline 2 ] [x]"])
def test_a_tag_is_found_and_stripped_again(comment: str) -> None:
    element = _hold(comment)
    tagged = views.with_tag(comment, element, "DOMAIN\\bob")
    assert "Parent Repo" in tagged and "2025-11-24" in tagged and "DOMAIN\\bob" in tagged
    assert views.tagged_guid(tagged) == element.guid
    assert views.tagged_job(tagged) == element.fields["job"]
    assert views.strip_tag(tagged) == comment
    assert views.tagged_guid(comment) is None


def test_job_views_read_missing_values_as_the_server_defaults() -> None:
    empty = views.job_view_of_fields({})
    server = views.job_view_of_fields(
        views.job_fields_of_server(
            {
                "name": "",
                "priority": 0,
                "assignedType": 0,
                "percentageComplete": 0,
                "description": "",
                "stage": 1,
                "status": None,
                "startDate": None,
            },
            "",
            "",
            "",
        )
    )
    assert empty == server
    closed = views.job_view_of_fields({"stage": "5"})
    assert closed["closed"] == "1" and empty["closed"] == "0"
