"""Property-based: whatever people type or paste into the "Install Harvest" page and the terminal install (client
ids with spaces, URLs, pasted callback addresses, account choices) and whatever account names Harvest shows, the
answer is the next step or a refusal that says what to fix: never a server error, never an unescaped name.

Runs in the real Airflow API server app in-process (tests/test_install_page.py's fixtures) against the simulator's
Harvest ID. ``PRIMETRIC_FUZZ_EXAMPLES`` raises the number of examples (README, "How the sync stays exact").
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import markupsafe
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harvest_simulator.harvest_id import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from primetric_harvest import oauth_install as oauth
from primetric_harvest.harvest_api import DEFAULT_BASE_URL, DEFAULT_ID_URL
from tests.test_fuzz_records import EXAMPLES, PHASES
from tests.test_install_page import PREFIX, admin, api, back, consent, harvest_id  # noqa: F401 - fixtures

SPACES = ["", " ", "\t", "\n", "\u00a0", "\u3000", "\r\n"]
typed = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40),
    st.builds(lambda a, b, c: f"{a}{b}{c}", st.sampled_from(SPACES), st.sampled_from([DEFAULT_CLIENT_ID, "abc"]),
              st.sampled_from(SPACES)),
    st.builds(lambda a, b: f"{a} {b}", st.sampled_from(["abc", DEFAULT_CLIENT_ID]), st.sampled_from(["def", "x"])),
    st.sampled_from(["", " ", "ab\x00cd", "зажим", "a\u200bb", "<script>alert(1)</script>", "%00", "a'b\"c"]),
)  # fmt: skip
urls = st.one_of(
    st.sampled_from(
        ["https://api.harvestapp.com", "http://127.0.0.1:1", "https://", "http://[::1", "ftp://x", "https://a b",
         "https://ex\u00e4mple.com", "javascript:alert(1)", "https://x/\r\nSet-Cookie: a=b", " https://x.test/ "]
    ),
    st.text(max_size=30),
    st.builds(lambda s: f"https://{s}", st.text(max_size=20)),
)  # fmt: skip


def fuzz_settings(default: int):
    return settings(
        max_examples=EXAMPLES or default,
        deadline=None,
        derandomize=EXAMPLES is None,
        database=None,
        phases=PHASES,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def refused(answer, words: str) -> None:
    assert answer.status_code == 400, (answer.status_code, answer.text[:300])
    assert "Harvest was not installed" in answer.text and words in answer.text


def parses(url: str) -> bool:
    """A URL the standard library can split (``http://[::1`` looks like one but is not: an unclosed IPv6 host)."""
    try:
        urlsplit(url)
    except ValueError:
        return False
    return True


def credential(value: str) -> bool:
    """What Harvest's client ids and secrets are made of, written here from the page's promise."""
    return bool(value) and all("!" <= c <= "~" for c in value)


@pytest.mark.airflow
@fuzz_settings(200)
@given(client_id=typed, client_secret=typed, api_url=urls, id_url=urls)
def test_whatever_is_typed_into_the_install_form_gets_the_next_step_or_says_what_to_fix(
    admin,  # noqa: F811 - the fixture imported above
    client_id,
    client_secret,
    api_url,
    id_url,
):
    answer = admin.post(
        f"{PREFIX}/authorize",
        data={"client_id": client_id, "client_secret": client_secret, "api_url": api_url, "id_url": id_url},
    )
    cid, secret = client_id.strip(), client_secret.strip()
    if not cid or not secret:
        return refused(answer, "Enter both the Client ID and the Client secret")
    for label, value in (("Client ID", cid), ("Client secret", secret)):
        if not credential(value):
            return refused(answer, f"The {label} holds a space or a character")
    defaults = {"Harvest API URL": DEFAULT_BASE_URL, "Harvest ID URL": DEFAULT_ID_URL}
    for label, url in (("Harvest API URL", api_url), ("Harvest ID URL", id_url)):
        url = url.strip() if url else defaults[label]  # an empty form field takes the field's default
        good = credential(url) and re.fullmatch(r"https?://[^/?#]+.*", url) is not None and parses(url)
        if not good:
            return refused(answer, f"{label} must be an https:// URL with a host")
    assert answer.status_code == 303, answer.text[:300]
    location = answer.headers["location"]
    assert location.startswith((id_url.strip() or DEFAULT_ID_URL).rstrip("/") + "/oauth2/authorize?")
    query = parse_qs(urlsplit(location).query)
    assert query["client_id"] == [cid] and "client_secret" not in query  # the secret never goes to the browser


@pytest.mark.airflow
@fuzz_settings(60)
@given(
    names=st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=30), min_size=2, max_size=4),
    chosen=typed,
)
def test_any_account_name_harvest_shows_is_shown_escaped_and_any_choice_answered(
    admin,  # noqa: F811
    harvest,
    harvest_id,  # noqa: F811
    names,
    chosen,
):
    harvest_id.accounts = [{"id": 8000 + i, "name": n, "product": "harvest"} for i, n in enumerate(names)]
    answer = admin.post(
        f"{PREFIX}/authorize",
        data={"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET, "api_url": harvest.url,
              "id_url": harvest_id.url},
    )  # fmt: skip
    page = back(admin, consent(answer.headers["location"], harvest_id))
    assert page.status_code == 200, page.text[:300]
    for i, name in enumerate(names):
        assert f"{markupsafe.escape(name)} ({8000 + i})" in page.text  # as the page's templates escape
    assert "<script>" not in page.text.split("<body", 1)[-1] or "<script>" not in "".join(names)
    answer = admin.post(f"{PREFIX}/account", data={"account_id": chosen})
    offered = {str(8000 + i) for i in range(len(names))}
    if chosen.strip() not in offered:
        refused(answer, "is not one the authorization gave access to")


STATE = "s" * 43


@pytest.mark.unit
@fuzz_settings(500)
@given(
    pasted=st.one_of(
        st.text(),
        st.builds(
            lambda base, query, pad: f"{pad}{base}?{query}{pad}",
            st.sampled_from(["https://airflow.example/harvest-install/callback", "http://[::1/cb", "x", "", "a://"]),
            st.dictionaries(st.sampled_from(["code", "state", "error", "other"]), st.text(max_size=20)).map(urlencode),
            st.sampled_from(SPACES),
        ),
    )
)
def test_whatever_is_pasted_back_gives_the_code_or_says_what_is_wrong(pasted):
    """scripts/harvest_authorize.py: the URL Harvest redirected to, or its code, pasted into a terminal."""
    try:
        code = oauth.parse_pasted(pasted, STATE)
    except oauth.HarvestOAuthError as exc:
        assert str(exc)
        return
    text = pasted.strip()
    if "://" in text or "?" in text:
        query = parse_qs(urlsplit(text).query)
        assert query["state"] == [STATE] and query["code"][0] == code and "error" not in query
    else:
        assert code == text
    assert credential(code)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("pasted", "result"),
    [
        (f" https://a.test/cb?code=abc&state={STATE}\n", "abc"),
        ("  abc-123  ", "abc-123"),
        ("abc def", "not an authorization code"),
        (f"http://[::1/cb?code=abc&state={STATE}", "is not a URL"),
        (f"https://a.test/cb?code=a%00b&state={STATE}", "code= holds characters"),
    ],
)
def test_pasted_examples(pasted, result):
    try:
        assert oauth.parse_pasted(pasted, STATE) == result
    except oauth.HarvestOAuthError as exc:
        assert result in str(exc)
