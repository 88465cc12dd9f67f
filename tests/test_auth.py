"""Tests of wmsync.auth: token sources (static, callable, thread-bound) and the token service."""

from __future__ import annotations

import threading

import pytest
import responses

from wmsync import errors
from wmsync.auth import (
    CallableToken,
    StaticToken,
    ThreadBoundToken,
    TokenSource,
    as_token_source,
    generate_token,
    token_text,
)

pytestmark = pytest.mark.floor  # run again on ArcGIS Pro 3.0's library versions (.ci/run)

TOKEN_URL = "https://portal.example/sharing/rest/generateToken"


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


class Rotating:
    def __init__(self, tokens):
        self.tokens = list(tokens)

    def get(self):
        return self.tokens[0]

    def refresh(self):
        return False


# -- token sources ---------------------------------------------------------------------------


def test_static_token():
    source = StaticToken("abc")
    assert source.get() == "abc" and source.refresh() is False
    assert "abc" not in repr(source)
    assert StaticToken("").get() is None


def test_callable_token_fetches_lazily_and_refreshes():
    calls = []

    def fetch():
        calls.append(1)
        return {"token": f"t{len(calls)}", "expires": 0}  # arcpy.GetSigninToken() shape

    source = CallableToken(fetch)
    assert calls == []
    assert source.get() == "t1" and source.get() == "t1"
    assert source.refresh() is True and source.get() == "t2"
    assert CallableToken(lambda: "same").refresh() is True
    same = CallableToken(lambda: "same")
    same.get()
    assert same.refresh() is False  # nothing new: no point retrying
    assert CallableToken(lambda: None).get() is None
    with pytest.raises(TypeError):
        CallableToken(lambda: 42).get()


def test_as_token_source():
    assert as_token_source(None) is None
    assert as_token_source("") is None
    assert isinstance(as_token_source("x"), StaticToken)
    rotating = Rotating(["a"])
    assert isinstance(rotating, TokenSource)
    assert as_token_source(rotating) is rotating
    assert isinstance(as_token_source(lambda: "x"), CallableToken)
    with pytest.raises(TypeError):
        as_token_source(42)  # type: ignore[arg-type]


def test_token_text_accepts_text_and_the_signin_mapping():
    assert token_text({"token": "abc", "referer": "x"}) == "abc"
    assert token_text({"token": ""}) is None and token_text({}) is None
    assert token_text("") is None and token_text(None) is None
    with pytest.raises(TypeError):
        token_text(7)


# -- a thread-bound source (Pro's sign-in token) -------------------------------------------------


class Fetcher:
    """Stands in for arcpy.GetSigninToken: refuses other threads, as arcpy must."""

    def __init__(self):
        self.owner = threading.get_ident()
        self.count = 0

    def __call__(self):
        if threading.get_ident() != self.owner:
            raise RuntimeError("arcpy called from a worker thread")
        self.count += 1
        return {"token": f"signin-{self.count}", "expires": 0}


def test_thread_bound_token_renews_on_its_own_thread():
    fetch = Fetcher()
    source = ThreadBoundToken(fetch)
    assert isinstance(source, TokenSource)
    assert source.get() == "signin-1"
    assert source.refresh() is True and source.get() == "signin-2"
    assert source.secrets() == ["signin-1", "signin-2"]
    assert "signin" not in repr(source)


def test_a_worker_renewal_waits_for_the_owner_to_serve_it():
    fetch = Fetcher()
    source = ThreadBoundToken(fetch)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(source.refresh()))
    worker.start()
    for _ in range(200):  # the owner polls, as the toolbox does on every Cancel check
        source.serve()
        if outcome:
            break
        worker.join(0.01)
    worker.join(5)
    assert outcome == [True]
    assert source.get() == "signin-2" and fetch.count == 2  # fetched on the owner only


def test_a_worker_gives_up_when_nobody_serves(monkeypatch):
    source = ThreadBoundToken(Fetcher())
    monkeypatch.setattr(ThreadBoundToken, "WAIT_SECONDS", 0.05)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(source.refresh()))
    worker.start()
    worker.join(5)
    assert outcome == [False] and source.get() == "signin-1"


def test_a_given_first_token_is_not_fetched_again():
    fetch = Fetcher()
    source = ThreadBoundToken(fetch, "already")
    assert source.get() == "already" and fetch.count == 0


# -- the token service -------------------------------------------------------------------------


def test_a_token_service_error_with_an_odd_code_is_still_an_authentication_error(rsps):
    rsps.post(TOKEN_URL, json={"error": {"code": "Invalid", "message": "bad credentials"}})
    with pytest.raises(errors.AuthenticationError, match="bad credentials"):
        generate_token(TOKEN_URL, "admin", "pw")


def test_the_token_service_gives_a_token(rsps):
    rsps.post(TOKEN_URL, json={"token": "fresh", "expires": 1})
    assert generate_token(TOKEN_URL, "admin", "pw") == "fresh"
    assert "password=pw" in rsps.calls[0].request.body
    assert "pw" not in rsps.calls[0].request.url


@pytest.mark.parametrize(
    "status, body, content_type, said",
    [
        (200, b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/html", "an HTML page"),
        (404, b"<html>not found</html>", "text/html", "HTTP 404 with an HTML page"),
        (200, b"", "application/json", "an empty body"),
        (200, b"<x/>", "application/xml", "markup (application/xml)"),
        (200, b"token=abc", "text/plain", "text/plain that is not JSON"),
    ],
)
def test_a_token_service_answer_that_is_not_json_says_what_it_was(
    rsps, status, body, content_type, said
):
    rsps.post(TOKEN_URL, body=body, status=status, content_type=content_type)
    with pytest.raises(errors.ProtocolError) as caught:
        generate_token(TOKEN_URL, "admin", "pw")
    text = str(caught.value)
    assert f"the token service answered {said}, not JSON" in text
    assert "cannot reach" not in text and "JSONDecodeError" not in text
    assert TOKEN_URL in text and "pw" not in text.replace("generateToken", "")


def test_an_unreachable_token_service_is_a_connection_failure():
    with pytest.raises(errors.ConnectionFailed, match="cannot reach the token service"):
        generate_token("http://127.0.0.1:9/generateToken", "admin", "pw", timeout=2)
