"""Failure alerts and missing-teammate notices, delivered for real: a local SMTP server (aiosmtpd) and a
local HTTP server standing in for a Slack webhook receive what Airflow's notifiers send."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from tests.fixtures import TOKEN

pytestmark = pytest.mark.airflow
BASE_URL = "https://airflow.acme.test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smtp_connection(port: int) -> str:
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "extra": {
                "from_email": "airflow@acme.test",
                "to": ["pm@acme.test", "ops@acme.test"],
                "disable_tls": True,
                "disable_ssl": True,
                "timeout": 5,
                "retry_limit": 0,
            },
        }
    )


# -- the receiving ends --------------------------------------------------------------------------------
class Mailbox:
    """An SMTP server on a free local port; ``messages`` holds what it received."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.EmailMessage] = []
        self.recipients: list[list[str]] = []
        self.port = _free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        self.recipients.append(list(envelope.rcpt_tos))
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def connection(self, port: int | None = None) -> str:
        return smtp_connection(port or self.port)

    def bodies(self) -> list[str]:
        return [m.get_body(("html", "plain")).get_content() for m in self.messages]


class SlackWebhook:
    """An HTTP server that answers like Slack's incoming webhooks; ``posts`` holds the JSON bodies."""

    def __init__(self):
        posts = self.posts = []
        paths = self.paths = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                paths.append(self.path)
                posts.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/XXXX"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def connection(self) -> str:
        return json.dumps({"conn_type": "slackwebhook", "password": self.url})


@pytest.fixture
def mailbox(monkeypatch):
    box = Mailbox()
    box.controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_HARVEST_ALERTS_SMTP", box.connection())
    try:
        yield box
    finally:
        box.controller.stop()


@pytest.fixture
def slack(monkeypatch):
    hook = SlackWebhook()
    hook.thread.start()
    monkeypatch.setenv("AIRFLOW_CONN_HARVEST_ALERTS_SLACK", hook.connection())
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()
        hook.thread.join(5)


@pytest.fixture
def apollo(apollo, airflow_db, monkeypatch):
    """Apollo with an entry of Bobby's and one of Nina's (a missing teammate); no alert channel unless a test
    adds one; links in messages point at BASE_URL."""
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    monkeypatch.delenv("AIRFLOW_CONN_HARVEST_ALERTS_SLACK", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_HARVEST_ALERTS_SMTP", raising=False)
    apollo.entry("bobby", 701, "2026-02-01", 2.5)
    apollo.entry("nina", 701, "2026-02-03", 3)
    return apollo


def _failing_run(world, dagbag):
    """A real run whose extract fails: Harvest answers 401 (a revoked token)."""
    world.sim.faults.add("unauthorized", times=None)
    run = dagbag.dag(7, retries=0).test(run_conf={"since": "2026-01-01"})
    assert run.state == "failed", run.state
    return run


def _log_url(run, task_id: str) -> str:
    return f"{BASE_URL}/dags/harvest_sync_7/runs/{quote(run.run_id)}/tasks/{task_id}?try_number=1"


# -- failure alerts ------------------------------------------------------------------------------------
def test_a_failed_run_emails_who_what_and_where(apollo, dagbag, mailbox):
    run = _failing_run(apollo, dagbag)

    assert len(mailbox.messages) == 1, [m["Subject"] for m in mailbox.messages]
    message = mailbox.messages[0]
    assert message["Subject"] == "Harvest sync failed: Apollo (project 7), step extract"
    assert mailbox.recipients == [["pm@acme.test", "ops@acme.test"]]
    assert message["From"] == "airflow@acme.test"
    body = mailbox.bodies()[0]
    assert "The Harvest → Primetric sync of Apollo (project 7) failed in step &#x27;extract&#x27;" in body
    assert "Error: HarvestAccessError: Harvest answered HTTP 401 for /v2/users/me: the access token is invalid" in body
    assert f'<a href="{_log_url(run, "extract")}">Task log</a>' in body
    assert TOKEN not in body and TOKEN not in message["Subject"]


def test_slack_is_preferred_when_both_channels_exist(apollo, dagbag, mailbox, slack):
    run = _failing_run(apollo, dagbag)

    assert mailbox.messages == []
    assert slack.paths == ["/services/T000/B000/XXXX"]
    text = slack.posts[0]["text"]
    lines = text.splitlines()
    assert lines[0] == "*Harvest sync failed: Apollo (project 7), step extract*"
    assert lines[2].startswith("Error: HarvestAccessError: Harvest answered HTTP 401 for /v2/users/me")
    assert lines[-1] == f"<{_log_url(run, 'extract')}|Task log>"
    assert len(text) < 1000  # short: one line per fact, the first line of the error only


def test_without_a_channel_the_alert_is_only_logged(apollo, dagbag, caplog):
    with caplog.at_level(logging.INFO, logger="primetric_harvest.notify"):
        run = _failing_run(apollo, dagbag)
    messages = [r.getMessage() for r in caplog.records if r.name == "primetric_harvest.notify"]
    alert = [m for m in messages if m.startswith("Harvest sync failed: Apollo (project 7), step extract")]
    assert len(alert) == 1, messages
    assert "Error: HarvestAccessError: Harvest answered HTTP 401" in alert[0]
    assert f"Task log: {_log_url(run, 'extract')}" in alert[0]
    assert any("was only logged" in m for m in messages)


def test_a_broken_channel_does_not_hide_the_tasks_failure(apollo, dagbag, monkeypatch, caplog):
    closed_port = _free_port()  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_HARVEST_ALERTS_SMTP", smtp_connection(closed_port))
    with caplog.at_level(logging.INFO, logger="primetric_harvest.notify"):
        _failing_run(apollo, dagbag)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and r.name.endswith("notify")]
    assert any(m.startswith("could not send the failure alert of project 7") for m in errors), errors


def test_an_error_message_is_not_rendered_as_a_template(airflow_db, mailbox):
    from primetric_harvest import notify

    message = notify.Message(
        "Harvest sync failed: {{ ds }}", ("Error: KeyError: '{{ conn.harvest_default.password }}'",)
    )
    assert notify.send(message, {}) == "smtp"
    assert mailbox.messages[0]["Subject"] == "Harvest sync failed: {{ ds }}"
    assert "{{ conn.harvest_default.password }}" in mailbox.bodies()[0]


# -- missing-teammate notices ---------------------------------------------------------------------------
def _notice_rows(world) -> list[tuple]:
    return world.sql("SELECT project_id, notice_date, channel FROM harvest_sync.notices ORDER BY notice_date")


def test_two_runs_the_same_day_send_one_notice(apollo, dagbag, mailbox):
    first = dagbag.dag(7).test(run_conf={"since": "2026-01-01"})
    second = dagbag.dag(7).test()
    assert (first.state, second.state) == ("success", "success")

    assert [m["Subject"] for m in mailbox.messages] == ["Harvest sync: 1 new missing teammate in Apollo (project 7)"]
    body = mailbox.bodies()[0]
    assert (
        "Nina Novak &lt;nina@acme.test&gt;: no Primetric manager or employee has the person&#x27;s e-mail; 1 entries, 3"
        in body
    )
    assert "to do: add them to Primetric as a Manager or Employee with this e-mail" in body
    assert "2026-02-03 to 2026-02-03" in body
    assert f'<a href="{_log_url(first, "report")}">Report log</a>' in body
    assert [(p, c) for p, _, c in _notice_rows(apollo)] == [(7, "smtp")]


def _today(world) -> dt.date:
    """The day notices are counted in: the Primetric database's current date."""
    return world.sql("SELECT current_date")[0][0]


def test_a_new_missing_person_is_named_in_the_next_days_notice_only(apollo, mailbox):
    from primetric_harvest import notify

    today = _today(apollo)
    apollo.sync(7, since="2026-01-01")  # its report sends today's notice: Nina
    assert len(mailbox.messages) == 1

    apollo.harvest_user("omar", "omar@acme.test", "Omar", "Odd")
    apollo.entry("omar", 701, "2026-02-05", 4)
    apollo.sync(7)  # Omar is new, but today's notice went out already
    assert len(mailbox.messages) == 1
    assert notify.notice_missing_teammates(7, "Apollo", today=today) == {"noticed": 0, "pending": 1, "channel": None}

    tomorrow = notify.notice_missing_teammates(7, "Apollo", today=today + dt.timedelta(days=1))
    assert tomorrow == {"noticed": 1, "pending": 0, "channel": "smtp"}
    assert len(mailbox.messages) == 2
    body = mailbox.bodies()[1]
    assert "Omar Odd &lt;omar@acme.test&gt;" in body and "Nina" not in body  # Nina was named already
    assert notify.notice_missing_teammates(7, "Apollo", today=today + dt.timedelta(days=2))["noticed"] == 0


def test_a_person_who_comes_back_to_the_list_is_news_again(apollo, mailbox):
    from primetric_harvest import notify

    apollo.sync(7, since="2026-01-01")  # names Nina
    apollo.employee(2, "nina@acme.test", "Nina")  # added to Primetric: she syncs, no longer missing
    apollo.sync(7)
    assert apollo.missing(7) == []
    assert apollo.sql("SELECT count(*) FROM harvest_sync.noticed_teammates")[0][0] == 0
    assert len(mailbox.messages) == 1

    apollo.sql("DELETE FROM primetric.employees WHERE id = 2")  # gone again: missing again, news again
    apollo.sync(7)
    tomorrow = _today(apollo) + dt.timedelta(days=1)
    assert notify.notice_missing_teammates(7, "Apollo", today=tomorrow)["noticed"] == 1
    assert len(mailbox.messages) == 2 and "Nina Novak" in mailbox.bodies()[1]


def test_a_notice_that_could_not_be_sent_is_sent_by_the_next_run(apollo, mailbox, monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_CONN_HARVEST_ALERTS_SMTP", mailbox.connection(port=_free_port()))
    with caplog.at_level(logging.ERROR, logger="primetric_harvest.notify"):
        apollo.sync(7, since="2026-01-01")  # the sync succeeds; its notice cannot be sent
    assert any("could not send the missing-teammate notice of project 7" in r.getMessage() for r in caplog.records)
    assert _notice_rows(apollo) == []
    assert apollo.sql("SELECT count(*) FROM harvest_sync.noticed_teammates")[0][0] == 0

    monkeypatch.setenv("AIRFLOW_CONN_HARVEST_ALERTS_SMTP", mailbox.connection())
    apollo.sync(7)  # the next run sends it
    assert len(mailbox.messages) == 1 and "Nina Novak" in mailbox.bodies()[0]
    assert [p for p, _, _ in _notice_rows(apollo)] == [7]


def test_notices_go_to_slack_too(apollo, slack):
    apollo.sync(7, since="2026-01-01")
    assert [c for _, _, c in _notice_rows(apollo)] == ["slack"] and len(slack.posts) == 1
    text = slack.posts[0]["text"]
    assert text.splitlines()[0] == "*Harvest sync: 1 new missing teammate in Apollo (project 7)*"
    assert "- Nina Novak &lt;nina@acme.test&gt;: no Primetric manager or employee has the person's e-mail" in text
