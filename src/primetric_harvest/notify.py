"""What the sync tells people: failure alerts, missing-teammate notices and the run summary.

Alerts and notices go through Airflow's notifiers, to the channel whose connection exists:

- ``harvest_alerts_slack`` (conn_type ``slackwebhook``; password = the webhook URL or its token):
  ``SlackWebhookNotifier``;
- else ``harvest_alerts_smtp`` (conn_type ``smtp``; extra ``to`` = recipients, ``from_email``):
  ``SmtpNotifier``;
- neither: the message is only logged.

Every message is logged as well. Import cost matters (the DAG file imports this module at parse time):
providers, pandas and psycopg are imported where they are used.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from primetric_harvest.names import ALERTS_SLACK_CONN_ID as SLACK_CONN_ID
from primetric_harvest.names import ALERTS_SMTP_CONN_ID as SMTP_CONN_ID
from primetric_harvest.names import PRIMETRIC_CONN_ID, ConnectionUse, connection_name
from primetric_harvest.results import Extracted, Loaded, Reported, RunSummary, Transformed
from primetric_harvest.skip_reasons import SkipReason

if TYPE_CHECKING:
    from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class Message:
    subject: str
    lines: tuple[str, ...]
    link: str | None = None
    link_text: str = "Task log"

    def text(self) -> str:
        return "\n".join([self.subject, *self.lines, *([f"{self.link_text}: {self.link}"] if self.link else [])])

    def slack(self) -> str:
        def esc(s: str) -> str:  # Slack's mrkdwn control characters
            return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

        link = [f"<{self.link}|{esc(self.link_text)}>"] if self.link else []
        return "\n".join([f"*{esc(self.subject)}*", *map(esc, self.lines), *link])

    def html(self) -> str:
        parts = [f"<p>{html.escape(line)}</p>" for line in self.lines]
        if self.link:
            parts.append(f'<p><a href="{html.escape(self.link, quote=True)}">{html.escape(self.link_text)}</a></p>')
        return "".join(parts)


# -- channels ----------------------------------------------------------------------------------------
def _connection(conn_id: str):
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def channel() -> tuple[str, Any] | None:
    """("slack" | "smtp", connection) of the first alert connection that exists, else None."""
    for kind, conn_id in (("slack", SLACK_CONN_ID), ("smtp", SMTP_CONN_ID)):
        conn = _connection(conn_id)
        if conn is not None:
            return kind, conn
    return None


def notifier(kind: str, conn: Any, message: Message) -> BaseNotifier:
    """The Airflow notifier that delivers ``message`` on channel ``kind``."""
    result: BaseNotifier
    if kind == "slack":
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        result = SlackWebhookNotifier(slack_webhook_conn_id=SLACK_CONN_ID, text=message.slack())
    elif kind == "smtp":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        to = (conn.extra_dejson or {}).get("to")
        if not to:
            raise ValueError(
                f"connection {SMTP_CONN_ID!r} names no recipients: set extra.to (an address or a list of them)"
            )
        result = SmtpNotifier(
            smtp_conn_id=SMTP_CONN_ID,
            to=to,
            from_email=(conn.extra_dejson or {}).get("from_email"),
            subject=message.subject,
            html_content=message.html(),
        )
    else:
        raise ValueError(f"unknown alert channel {kind!r}; expected 'slack' or 'smtp'")
    return _untemplated(result)


def _untemplated(notifier: BaseNotifier) -> BaseNotifier:
    """Our text is final: an error message holding "{{" must not be rendered as a Jinja template."""
    notifier.template_fields = ()
    return notifier


def send(message: Message, context: Mapping | None = None, found: tuple[str, Any] | bool | None = True) -> str:
    """Log ``message`` and deliver it; returns the channel used ("slack", "smtp" or "log").

    ``found``: a result of :func:`channel` already looked up (True: look it up here).
    A delivery failure raises: the caller decides whether it matters.
    """
    found = channel() if found is True else found
    log.warning("%s", message.text())
    if not found:
        log.info("no %s or %s connection: the message above was only logged", SLACK_CONN_ID, SMTP_CONN_ID)
        return "log"
    kind, conn = found
    notifier(kind, conn, message)(dict(context or {}))
    log.info("sent through %s (connection %s)", kind, SLACK_CONN_ID if kind == "slack" else SMTP_CONN_ID)
    return kind


def _redact(text: str) -> str:
    """Replace any secret Airflow knows of (connection passwords it handed out) by ***."""
    try:
        from airflow.sdk._shared.secrets_masker.secrets_masker import redact
    except ImportError:  # pragma: no cover - a private module of the Task SDK; never fail an alert over it
        return text
    return str(redact(text))


# -- failure alerts ------------------------------------------------------------------------------------
def first_line(error: BaseException | str | None) -> str:
    if error is None:
        return "no error was recorded (the task was failed from outside, e.g. marked failed or timed out)"
    if isinstance(error, BaseException) and type(error).__name__ == "AirflowFailException" and error.__cause__:
        error = error.__cause__  # "fail without retries" wraps the real error: name that one
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    if isinstance(error, BaseException):
        line = f"{type(error).__name__}: {line}" if line else type(error).__name__
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


def failure_message(project_id: int, project_name: str, context: Mapping) -> Message:
    ti = context["ti"]
    try_number = getattr(ti, "try_number", None)
    attempt = f", attempt {try_number}" if try_number else ""
    return Message(
        subject=f"Harvest sync failed: {project_name} (project {project_id}), step {ti.task_id}",
        lines=(
            f"The Harvest → Primetric sync of {project_name} (project {project_id}) failed in step "
            f"'{ti.task_id}' of run {ti.run_id}{attempt}.",
            _redact(f"Error: {first_line(context.get('exception'))}"),
        ),
        link=ti.log_url,
    )


class FailureAlert:
    """``on_failure_callback`` of a project's tasks: one short message per failed task (after its retries)."""

    def __init__(self, project_id: int, project_name: str):
        self.project_id = project_id
        self.project_name = project_name

    def __call__(self, context: Mapping) -> None:
        try:
            send(failure_message(self.project_id, self.project_name, context), context)
        except Exception as exc:  # noqa: BLE001 - a broken channel must not hide the task's own error
            log.error("could not send the failure alert of project %s: %s", self.project_id, first_line(exc))

    def __repr__(self) -> str:  # shown in the DAG's details
        return f"FailureAlert(project_id={self.project_id})"


# -- freshness (Airflow Deadline Alerts) ------------------------------------------------------------------
SCHEDULED = "scheduled"  # the run type the freshness deadline is about (Airflow's DagRunType.SCHEDULED)


def _utc(value: Any) -> dt.datetime | None:
    """A datetime of the deadline's context (a datetime, or ISO text once it went through JSON), in UTC."""
    if value is None or value == "":
        return None
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def _hours(hours: float) -> str:
    if hours >= 1:
        return f"{hours:g} h"
    return f"{hours * 60:g} min" if hours * 60 >= 1 else f"{hours * 3600:g} s"


def run_link(dag_id: str, run_id: str) -> str | None:
    """The run's page in Airflow's UI, when ``[api] base_url`` says where Airflow is."""
    from urllib.parse import quote

    try:
        from airflow.configuration import conf

        base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    except Exception:  # noqa: BLE001 - a link is a courtesy; never lose the alert over it
        return None
    return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}" if base else None


def freshness_message(project_id: int, project_name: str, hours: float, context: Mapping) -> Message:
    """ "Work logs late": which project, which daily run, since when (the deadline), what the run is doing."""
    dag_run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    scheduled = _utc(dag_run.get("logical_date"))
    late_since = _utc(deadline.get("deadline_time"))
    run_id = str(dag_run.get("dag_run_id") or dag_run.get("run_id") or "?")
    at = "%Y-%m-%d %H:%M UTC"
    return Message(
        subject=f"Harvest sync late: {project_name} (project {project_id}), work logs not loaded",
        lines=(
            f"The daily Harvest → Primetric sync of {project_name} (project {project_id}) scheduled for "
            f"{scheduled.strftime(at) if scheduled else '?'} had not loaded its work logs {_hours(hours)} later: "
            f"late since {late_since.strftime(at) if late_since else '?'}.",
            f"Run {run_id} is {dag_run.get('state') or 'unknown'}: look at its tasks (a failure alert names the "
            "failed step), the pool harvest_api and the workers.",
        ),
        link=run_link(str(dag_run.get("dag_id") or ""), run_id) if dag_run.get("dag_id") else None,
        link_text="The run",
    )


async def freshness_alert(project_id: int, project_name: str, hours: float, context: Mapping | None = None) -> str:
    """The Deadline Alert callback of a project's DAG (``AsyncCallback``: it runs in Airflow's triggerer).

    Airflow calls it when a run with a logical date is not done ``hours`` after that date. Only a scheduled daily
    run is about freshness: a backfill's or a manual run's deadline (a logical date in the past) is let go here.
    Returns the channel used ("slack", "smtp", "log"), or "not scheduled".
    """
    from asgiref.sync import sync_to_async

    context = context or {}
    dag_run = context.get("dag_run") or {}
    if dag_run.get("run_type") != SCHEDULED:
        log.info(
            "freshness deadline of run %s (%s) of project %s passed: not a scheduled run, no alert",
            dag_run.get("dag_run_id"),
            dag_run.get("run_type"),
            project_id,
        )
        return f"not {SCHEDULED}"
    message = freshness_message(project_id, project_name, hours, context)
    # Airflow's notifiers and connection lookups are synchronous: in a thread, off the triggerer's event loop.
    return await sync_to_async(send, thread_sensitive=False)(message, None)


# -- missing-teammate notices --------------------------------------------------------------------------
def people_to_notice(missing, noticed):
    """Missing teammates not named before for the same reason (both frames: harvest_user_id, reason)."""
    keys = ["harvest_user_id", "reason"]
    if noticed.empty:
        return missing.reset_index(drop=True)
    seen = noticed[keys].drop_duplicates().assign(_seen=True)
    merged = missing.merge(seen, on=keys, how="left")
    return merged[merged["_seen"].isna()].drop(columns="_seen").reset_index(drop=True)


def _describe(row) -> str:
    reason = SkipReason.describe(row.reason)
    action = getattr(SkipReason.from_code(row.reason), "action", None)
    days = f"{row.first_work_date} to {row.last_work_date}" if row.first_work_date else "no dates"
    who = f"{row.name or '(no name)'} <{row.email or 'no e-mail'}>"
    return f"{who}: {reason}; {row.entries} entries, {row.hours} h, {days}" + (f"; to do: {action}" if action else "")


def notice_message(project_id: int, project_name: str, people, link: str | None) -> Message:
    n = len(people)
    return Message(
        subject=f"Harvest sync: {n} new missing teammate{'s' if n != 1 else ''} in {project_name} "
        f"(project {project_id})",
        lines=(
            "These people log time in Harvest, but their hours cannot become Primetric work logs:",
            *(f"- {_describe(row)}" for row in people.itertuples()),
            "Once they are in Primetric (and on the project), the next sync picks up all their hours.",
        ),
        link=link,
        link_text="Report log",
    )


def notice_missing_teammates(
    project_id: int,
    project_name: str,
    *,
    run_id: str | None = None,
    context: Mapping | None = None,
    today: dt.date | None = None,
    conn_id: str | None = None,
) -> dict:
    """Name the project's new missing teammates: at most one notice per project per day.

    People found after the day's notice went out are named in the next day's. The notice is recorded
    in the same transaction that sends it: if sending fails nothing is recorded, and the next run tries
    again. Returns {"noticed": n, "pending": n, "channel": ...}.
    """
    import pandas as pd

    from primetric_harvest.db import connect, one_row, query

    def frame(conn, name: str, params: dict) -> pd.DataFrame:
        cur = conn.execute(query("notices", name), params)
        return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])

    p = {"project_id": project_id}
    name = connection_name(ConnectionUse.NOTICE, project_id)
    with connect(conn_id or PRIMETRIC_CONN_ID, application_name=name) as conn, conn.transaction():
        conn.execute(query("notices", "lock_project"), p)
        conn.execute(query("notices", "forget_resolved"), p)
        new = people_to_notice(frame(conn, "missing", p), frame(conn, "noticed", p))
        if new.empty:
            return {"noticed": 0, "pending": 0, "channel": None}
        (day,) = one_row(conn.execute(query("notices", "today"), {"today": today}))
        found = channel()
        kind = found[0] if found else "log"
        people = new[["harvest_user_id", "email", "name", "reason"]].to_dict("records")
        claimed = conn.execute(
            query("notices", "claim_day"),
            {**p, "notice_date": day, "run_id": run_id, "channel": kind, "people": json.dumps(people)},
        ).fetchone()
        if claimed is None:
            log.info(
                "%d new missing teammate(s) in project %s; today's notice went out already: named in tomorrow's",
                len(new),
                project_id,
            )
            return {"noticed": 0, "pending": len(new), "channel": None}
        conn.execute(
            query("notices", "remember"),
            {
                **p,
                "notice_date": day,
                "harvest_user_id": [int(u) for u in new["harvest_user_id"]],
                "reason": list(new["reason"]),
            },
        )
        ti = (context or {}).get("ti")
        message = notice_message(project_id, project_name, new, getattr(ti, "log_url", None))
        send(message, context, found)  # raises: the transaction rolls back, the next run tries again
    return {"noticed": len(new), "pending": 0, "channel": kind}


# -- run summary -------------------------------------------------------------------------------------
def summary_line(project_id: int, summary: RunSummary) -> str:
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(summary.skipped_by_reason.items())) or "none"
    seconds = ", ".join(f"{k} {'-' if v is None else f'{v:.2f}'}" for k, v in vars(summary.seconds).items())
    return (
        f"Run summary of project {project_id} ({summary.mode}): {summary.entries_fetched} entries fetched; "
        f"work logs {summary.worklogs_inserted} inserted, {summary.worklogs_updated} updated, "
        f"{summary.worklogs_deleted} deleted; skipped by reason: {skipped}; "
        f"{summary.missing_teammates} missing teammates; {summary.harvest_requests} Harvest requests, "
        f"{summary.harvest_429s} answered 429; seconds: {seconds}"
        + "".join(f"; {part}" for part in _exactness_notes(summary))
    )


def _exactness_notes(summary: RunSummary) -> list[str]:
    """What the run could not take as Harvest sent it, and what it did instead (said only when it happened)."""
    notes = []
    if summary.previous_versions_kept:
        notes.append(
            f"{summary.previous_versions_kept} work logs keep their last readable version (Harvest's newer one "
            "is kept aside)"
        )
    if summary.texts_altered:
        notes.append(f"{summary.texts_altered} entries' text stored without characters PostgreSQL cannot store")
    if summary.unidentified_records:
        notes.append(
            f"{summary.unidentified_records} records named no entry: no work log of a deleted entry was removed"
        )
    return notes


def finish_run(
    project_id: int,
    project_name: str,
    extracted: Extracted,
    transformed: Transformed,
    loaded: Loaded,
    reported: Reported,
    *,
    run_id: str | None = None,
    context: Mapping | None = None,
) -> RunSummary:
    """End of a successful run (the report task): missing-teammate notice, then the summary line in the log.
    The caller stores the summary as the XCom ``summary`` (the Task SDK cannot set a run's note)."""
    try:
        notice_missing_teammates(project_id, project_name, run_id=run_id, context=context)
    except Exception as exc:  # noqa: BLE001 - the sync itself succeeded; the next run sends it
        log.error("could not send the missing-teammate notice of project %s: %s", project_id, first_line(exc))
    summary = RunSummary.of(extracted, transformed, loaded, reported)
    summary = dataclasses.replace(summary, line=summary_line(project_id, summary))
    log.info("%s", summary.line)
    return summary
