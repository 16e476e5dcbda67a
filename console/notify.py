"""Notifications: a Slack-compatible webhook and email, on failure (and success or gates).

`app.notify` (`console.config.NotifyConfig`) says when (`on`: failure, success, gate)
and where (`slack_webhook` or the variable `slack_webhook_env` naming it, `email`). A notification that cannot be delivered is
*reported* - as a `Delivery` with `ok=False`, handed to `on_result` - and never raised
into the release nor allowed to block it: sends run on a background thread, and every
network call has a timeout (`notify.timeout`, `email.timeout`).

Using it: `console.session.Session` attaches it to every engine, next to the ledger -
`NotifyListener(Notifier(config.app.notify, app=config.app.name), on_result=...)` - and
its `close()` gives the pending sends `session.NOTIFY_CLOSE_TIMEOUT` (30 s) to finish::

    with Session(config, engine, on_warning=print):   # undelivered: a warning, no raise
        engine.run(request, approver)

Or directly: `Notifier(...).send(Notification(...)) -> list[Delivery]` (blocking, never
raises). The webhook body is JSON: `text` (what Slack shows) plus `app`, `version`,
`release`, `outcome`, `event`, `clusters`, `failed_clusters` and `errors` (cluster ->
error excerpt, secrets masked). Email uses smtplib with STARTTLS (default on) and logs
in when `username_env` is set, the password read from `password_env` at send time.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from console.events import Event, Kind, Outcome
from console.redact import scrub

if TYPE_CHECKING:
    from console.config import NotifyConfig

EXCERPT = 300            # characters of each cluster's error in a notification
DELIVERIES_KEPT = 200    # the latest deliveries a listener remembers
WATCHED = frozenset({Kind.RELEASE_PLANNED, Kind.RELEASE_STARTED, Kind.CLUSTER_FAILED, Kind.CLUSTER_ROLLED_BACK,
                     Kind.PREFLIGHT_RESULT, Kind.GATE_WAITING, Kind.RELEASE_FINISHED})


@dataclass(frozen=True)
class Notification:
    """What to tell people: one release's failure or success, or a gate waiting."""

    event: str                                  # "failure" | "success" | "gate" | "freeze_override"
    app: str
    version: str
    release_id: str
    outcome: str                                # the release outcome, or "gate_waiting"
    clusters: tuple[str, ...] = ()              # the targets (for a gate: the next wave)
    failed: tuple[tuple[str, str], ...] = ()    # (cluster, error excerpt)
    operator: str = ""
    freeze_override: str = ""                   # who let it through open windows, and why

    @property
    def title(self) -> str:
        """One line: the subject of the email and the first line of the chat message."""
        if self.event == "freeze_override":
            return f"{self.app} {self.version}: released through a freeze window"
        if self.event == "gate":
            return (f"{self.app} {self.version}: approval needed before "
                    f"{', '.join(self.clusters) or 'the next wave'}")
        if self.failed:
            names = ", ".join(cluster for cluster, _ in self.failed)
            return f"{self.app} {self.version}: release {self.outcome} on {names}"
        return f"{self.app} {self.version}: release {self.outcome}"

    def text(self) -> str:
        """The full message: title, release, operator, then one line per failed cluster."""
        lines = [self.title, f"release {self.release_id}"
                 + (f" by {self.operator}" if self.operator else "")]
        if self.clusters:
            lines.append(("next wave: " if self.event == "gate" else "clusters: ")
                         + ", ".join(self.clusters))
        lines += [f"- {cluster}: {error or 'failed'}" for cluster, error in self.failed]
        if self.freeze_override:
            lines.append(self.freeze_override)
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        """The webhook JSON body (Slack shows `text`; the rest is for machines)."""
        return {"text": self.text(), "event": self.event, "app": self.app,
                "version": self.version, "release": self.release_id, "outcome": self.outcome,
                "operator": self.operator, "clusters": list(self.clusters),
                "failed_clusters": [cluster for cluster, _ in self.failed],
                "errors": {cluster: error for cluster, error in self.failed},
                **({"freeze_override": self.freeze_override} if self.freeze_override else {})}


@dataclass(frozen=True)
class Delivery:
    """How one channel fared. `detail` never contains the webhook URL or a password."""

    channel: str        # "webhook" | "email"
    ok: bool
    detail: str


class Notifier:
    """Sends notifications through the configured channels; never raises."""

    def __init__(self, settings: NotifyConfig, *, app: str) -> None:
        """`settings` is `config.app.notify`; `app` names the application."""
        self.settings = settings
        self.app = app

    def has_channel(self) -> bool:
        """Whether a webhook or mail is configured."""
        return bool(self.settings.slack_webhook or self.settings.slack_webhook_env
                    or self.settings.email)

    def wants(self, event: str) -> bool:
        """Whether `event` (failure, success, gate) is in `notify.on` and a channel is set."""
        return event in self.settings.on and bool(
            self.settings.slack_webhook or self.settings.slack_webhook_env or self.settings.email)

    def send(self, note: Notification) -> list[Delivery]:
        """Deliver `note` on every configured channel; one Delivery per channel."""
        out = []
        if self.settings.slack_webhook or self.settings.slack_webhook_env:
            out.append(self.send_webhook(note))
        if self.settings.email is not None:
            out.append(self.send_email(note))
        return out

    def send_webhook(self, note: Notification) -> Delivery:
        """POST the JSON payload to `slack_webhook` (or `$slack_webhook_env`); 2xx is success."""
        import httpx

        url = self.settings.slack_webhook or ""
        if not url and self.settings.slack_webhook_env:
            url = os.environ.get(self.settings.slack_webhook_env, "")
            if not url.startswith(("https://", "http://")):
                return Delivery("webhook", False, f"webhook: ${self.settings.slack_webhook_env}"
                                " is not set to an http(s) URL")
        try:
            response = httpx.post(url, json=note.payload(), timeout=self.settings.timeout,
                                  follow_redirects=False)
        except httpx.TimeoutException:
            return Delivery("webhook", False,
                            f"webhook: no answer within {self.settings.timeout:g} s")
        except httpx.HTTPError as exc:
            # The URL is a credential (Slack's carries the token): name only the problem.
            return Delivery("webhook", False, f"webhook: {type(exc).__name__}: "
                            f"{scrub(str(exc).replace(url, '<webhook>'), 200)}")
        if 200 <= response.status_code < 300:
            return Delivery("webhook", True, f"webhook: HTTP {response.status_code}")
        return Delivery("webhook", False, f"webhook: HTTP {response.status_code} "
                        f"{scrub(response.text.replace(url, '<webhook>'), 200)}".rstrip())

    def send_email(self, note: Notification) -> Delivery:
        """Send `note` by SMTP (STARTTLS and login as configured)."""
        email = self.settings.email
        assert email is not None
        message = EmailMessage()
        message["Subject"] = f"[release-console] {note.title}"
        message["From"] = email.sender
        message["To"] = ", ".join(email.to)
        message.set_content(note.text() + "\n")
        username = password = None
        if email.username_env:
            username = os.environ.get(email.username_env)
            password = os.environ.get(email.password_env or "") if email.password_env else None
            if not username or password is None:
                missing = email.username_env if not username else email.password_env
                return Delivery("email", False, f"email: ${missing} is not set")
        try:
            with smtplib.SMTP(email.host, email.port, timeout=email.timeout) as smtp:
                if email.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if username:
                    smtp.login(username, password or "")
                refused = smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            detail = str(exc)
            if password:
                detail = detail.replace(password, "***")
            return Delivery("email", False, f"email via {email.host}:{email.port}: "
                            f"{type(exc).__name__}: {scrub(detail, 200)}")
        if refused:
            return Delivery("email", False, f"email: refused for {', '.join(refused)}")
        return Delivery("email", True, f"email: sent to {', '.join(email.to)}")


def override_line(override: dict[str, Any]) -> str:
    """`freeze override by NAME (operator OP): REASON (windows: a, b)` for a message -
    NAME as the cluster confirmed it, OP the operator when another name."""
    names = ", ".join(str(w.get("name")) for w in override.get("windows") or ())
    by = override.get("by") or "unknown"
    operator = override.get("operator")
    also = f" (operator {operator})" if operator and operator != by else ""
    return _excerpt(f"freeze override by {by}{also}: "
                    f"{override.get('reason') or ''} (windows: {names})")


class NotifyListener:
    """An engine listener that sends notifications in the background.

    Collects the release's data (RELEASE_PLANNED), failed clusters (CLUSTER_FAILED,
    failed PREFLIGHT_RESULT, failed rollbacks) and sends on GATE_WAITING (`gate`) and
    RELEASE_FINISHED (`success` for ok, `failure` otherwise). `on_result(deliveries)`
    is called from the sending thread with each notification's deliveries.
    """

    def __init__(self, notifier: Notifier,
                 on_result: Callable[[list[Delivery]], None] | None = None,
                 keep: int = DELIVERIES_KEPT) -> None:
        """Wrap `notifier`; `on_result` receives every batch of deliveries; the latest
        `keep` deliveries are remembered (a TUI session's listener lives for many
        releases)."""
        self.notifier = notifier
        self.on_result = on_result
        self.deliveries: deque[Delivery] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._releases: dict[str, dict[str, Any]] = {}
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notify")
        self._futures: list[Future[None]] = []

    def __call__(self, event: Event) -> None:
        """Take one engine event; returns at once."""
        if event.kind not in WATCHED:
            return
        with self._lock:
            if event.kind is Kind.RELEASE_PLANNED:
                self._releases[event.release_id] = {"data": dict(event.data), "failed": {}}
                return
            state = self._releases.get(event.release_id)
            if state is None:
                return  # not a release this listener saw planned (a manual action)
            if event.kind is Kind.RELEASE_STARTED:
                override = event.data.get("freeze_override")
                if override:
                    state["freeze_override"] = override_line(override)
                    # An override is always told (when a channel is set), whatever `on` says.
                    if self.notifier.has_channel():
                        self._submit(self._note(event, state, "freeze_override", "started",
                                                tuple(state["data"].get("targets") or ())))
            elif event.kind is Kind.CLUSTER_FAILED and event.cluster:
                state["failed"][event.cluster] = _excerpt(
                    event.data.get("error") or event.message)
            elif event.kind is Kind.CLUSTER_ROLLED_BACK and event.cluster and \
                    not event.data.get("ok", True):
                state["failed"][event.cluster] = _excerpt(
                    f"rollback failed: {event.data.get('error', '')}")
            elif event.kind is Kind.PREFLIGHT_RESULT and event.cluster and \
                    not event.data.get("ok", True):
                state["failed"].setdefault(event.cluster, _excerpt(
                    f"{event.data.get('check', 'pre-flight')}: "
                    f"{event.data.get('detail') or event.message}"))
            elif event.kind is Kind.GATE_WAITING and self.notifier.wants("gate"):
                self._submit(self._note(event, state, "gate", "gate_waiting",
                                        tuple(event.data.get("clusters") or ())))
            elif event.kind is Kind.RELEASE_FINISHED:
                self._releases.pop(event.release_id, None)
                outcome = str(event.data.get("outcome", "failed"))
                kind = "success" if outcome == Outcome.OK else "failure"
                if self.notifier.wants(kind):
                    self._submit(self._note(event, state, kind, outcome,
                                            tuple(state["data"].get("targets") or ())))

    def _note(self, event: Event, state: dict[str, Any], kind: str, outcome: str,
              clusters: tuple[str, ...]) -> Notification:
        data = state["data"]
        return Notification(event=kind, app=str(data.get("app") or self.notifier.app),
                            version=str(data.get("version", "?")),
                            release_id=event.release_id, outcome=outcome, clusters=clusters,
                            failed=tuple(state["failed"].items()) if kind != "gate" else (),
                            operator=str(data.get("operator") or ""),
                            freeze_override=str(state.get("freeze_override") or ""))

    def _submit(self, note: Notification) -> None:
        # Forget sends that finished: only pending ones are waited for.
        self._futures = [f for f in self._futures if not f.done()]
        self._futures.append(self._sender.submit(self._deliver, note))

    def _deliver(self, note: Notification) -> None:
        try:
            result = self.notifier.send(note)
        except Exception as exc:  # noqa: BLE001 - a notifier must never break a release
            result = [Delivery("notify", False, f"notify: {type(exc).__name__}: "
                               f"{scrub(str(exc), 200)}")]
        with self._lock:
            self.deliveries.extend(result)
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:  # noqa: BLE001, S110 - a broken reporter must not break a send
                pass

    def wait(self, timeout: float | None = None) -> list[Delivery]:
        """Wait (at most `timeout` s) for the sends so far; return every delivery so far."""
        with self._lock:
            futures = list(self._futures)
        wait_futures(futures, timeout=timeout)
        with self._lock:
            return list(self.deliveries)

    def close(self, timeout: float | None = None) -> list[Delivery]:
        """Wait for the sends, stop the sender thread, return every delivery."""
        out = self.wait(timeout)
        self._sender.shutdown(wait=False, cancel_futures=True)
        return out


def _excerpt(text: str) -> str:
    """At most EXCERPT characters of an event's text (already scrubbed when it was made)."""
    return text if len(text) <= EXCERPT else text[: EXCERPT - 3] + "..."
