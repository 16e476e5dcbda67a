"""One redaction, where text is made: an event (and an error) carrying secrets and
terminal escapes is scrubbed when it is created, so the terminal lines, the `--json`
stream, the ledger (records, human log, commits), the notifications and the JUnit report
never see them - and none of those scrubs again (issue 10.3, 11.19)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from console.cli.event_printer import EventPrinter
from console.config import NotifyConfig
from console.engine import ClusterResult, ReleaseResult
from console.errors import UserError
from console.events import Event, Kind
from console.history import EventLedger, Ledger
from console.junit import to_xml
from console.notify import Notifier, NotifyListener
from console.redact import register_secret, scrub
from tests.history.conftest import ALICE, APP, webhook  # noqa: F401 - fixture

PASSWORD = "pa55-W0rd-in-a-url-4711"
BEARER = "bearer-t0ken-abcdefghijklmnop"
KNOWN = "known-vault-t0ken-zyxwvu"          # registered: no pattern would catch it
FORGED = "2026-12-01T00:00:00Z - user-service - evil - prod - ok by root"
HOSTILE = (f"fetch https://deploy:{PASSWORD}@git.example.com/x failed; sent "
           f"Authorization: Bearer {BEARER}; vault said {KNOWN}\x1b[2J\x1b[31m RED\r\n"
           f"{FORGED}\x07\u202e")
SECRETS = (PASSWORD, BEARER, KNOWN)


def raw_leaks(text: str) -> list[str]:
    """What of the hostile text got through (secrets, escapes, the forged line)."""
    found = [f"secret {s[:6]}..." for s in SECRETS if s in text]
    found += [f"control {c!r}" for c in ("\x1b", "\x07", "\r", "\u202e") if c in text]
    found += ["forged line" for line in text.splitlines() if line.startswith(FORGED[:20])]
    return found


def events() -> list[Event]:
    rid = "r-hostile"
    return [
        Event(Kind.RELEASE_PLANNED, rid, message=f"release {HOSTILE}", data={
            "app": APP, "version": "1.0", "image": "reg/app:1.0", "strategy": "serial",
            "targets": ["a"], "waves": [{"clusters": ["a"], "note": HOSTILE}],
            "operator": "alice"}),
        Event(Kind.RELEASE_STARTED, rid, data={"version": "1.0", "targets": ["a"]}),
        Event(Kind.CLUSTER_STARTED, rid, "a", "nothing -> 1.0",
              {"from_version": None, "to_version": "1.0", "wave": 0}),
        Event(Kind.CLUSTER_FAILED, rid, "a", HOSTILE, {"error": HOSTILE, "duration": 1.0}),
        Event(Kind.CLUSTER_ROLLING_BACK, rid, "a", "rollback",
              {"from_version": "1.0", "to_version": None}),
        Event(Kind.CLUSTER_ROLLED_BACK, rid, "a", f"rollback failed: {HOSTILE}",
              {"version": None, "ok": False, "error": HOSTILE}),
        Event(Kind.RELEASE_FINISHED, rid, message=f"release failed ({HOSTILE})",
              data={"outcome": "failed", "exit_code": 1, "summary": {"failed": 1},
                    "detail": HOSTILE}),
    ]


def test_an_event_is_scrubbed_once_when_made_for_every_output(tmp_path, webhook) -> None:
    register_secret(KNOWN)
    terminal, stream = io.StringIO(), io.StringIO()
    ledger = Ledger(tmp_path / "ledger", APP, operator=ALICE)
    notify = NotifyListener(Notifier(NotifyConfig(on=("failure",), slack_webhook=webhook.url),
                                     app=APP))
    listeners = [EventPrinter(False, terminal), EventPrinter(True, stream),
                 EventLedger(ledger), notify]
    made = events()
    for event in made:
        for listener in listeners:
            listener(event)
    for printer in listeners[:2]:
        printer.close()            # printed by its own thread
    assert [d.ok for d in notify.close(timeout=20)] == [True]
    ledger.close()

    # Terminal: one line per event printed, nothing raw.
    assert raw_leaks(terminal.getvalue()) == []
    assert len(terminal.getvalue().splitlines()) == len(made)
    # --json: one parseable object per event, nothing raw in any value either.
    lines = stream.getvalue().splitlines()
    assert len(lines) == len(made)
    assert raw_leaks("\n".join(json.dumps(json.loads(line), ensure_ascii=False)
                               for line in lines)) == []
    # The ledger: records, the human log, every commit.
    history = subprocess.run(["git", "-C", str(ledger.path), "log", "-p", "--format=%B"],
                             capture_output=True, text=True, timeout=30).stdout
    human = (ledger.path / "deployment-history.log").read_text()
    assert raw_leaks(ledger.file.read_text() + history + human) == []
    assert len(human.splitlines()) == 1
    # The notification.
    assert webhook.bodies and raw_leaks(json.dumps(webhook.bodies, ensure_ascii=False)) == []
    # What was masked says so.
    failed = made[3]
    assert "https://***@git.example.com" in failed.message
    assert "Authorization: ***" in failed.message and "\\x1b[2J" in failed.message


def test_junit_gets_the_engine_errors_scrubbed(tmp_path) -> None:
    register_secret(KNOWN)
    result = ReleaseResult("r-1", "failed", 1, (
        ClusterResult("a", "failed", "1.0", "1.1", 2.0, HOSTILE),
        ClusterResult("b", "rolled_back", "1.0", "1.1", 2.0, HOSTILE, rolled_back_to="1.0")))
    assert raw_leaks(to_xml(result, APP, "1.1")) == []


def test_engine_results_are_scrubbed_when_made() -> None:
    """ClusterResult errors and ReleaseResult messages are not events: they are scrubbed
    where the engine makes them, so deploy's summary, JUnit and the TUI all get it once."""
    register_secret(KNOWN)
    cluster = ClusterResult("a", "failed", "1.0", "1.1", 2.0, HOSTILE)
    release = ReleaseResult("r-1", "failed", 1, (cluster,), message=HOSTILE)
    for text in (cluster.error, release.message):
        assert raw_leaks(text) == [] and "\n" not in text


def test_a_user_error_is_scrubbed_when_made() -> None:
    register_secret(KNOWN)
    error = UserError(f"clusters.yaml:3: history.remote: cannot reach {HOSTILE}")
    assert raw_leaks(str(error)) == [] and "\n" not in str(error)
    assert str(error).startswith("clusters.yaml:3: history.remote: cannot reach fetch https://***@")


def test_scrub_keeps_prose_and_masks_secrets() -> None:
    assert scrub("no Vault token: set $VAULT_TOKEN") == "no Vault token: set $VAULT_TOKEN"
    assert scrub("credentials.token: expected a string") == \
        "credentials.token: expected a string"
    assert scrub("password=hunter2! then") == "password=*** then"
    assert scrub("Proxy-Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l ok") == \
        "Proxy-Authorization: *** ok"
    assert scrub("line one\nline two\ttab") == "line one line two tab"
    assert scrub("a\x1b[31mb\x00c\u202ed") == "a\\x1b[31mb\\x00c\\u202ed"


def test_a_build_commands_output_is_scrubbed_where_it_is_read(tmp_path) -> None:
    """`deploy --build` prints the build's lines and the TUI's pane shows them: both get
    them from run_build, scrubbed (a build may echo tokens or colour codes)."""
    from console.version_tag import BuildOffer, run_build

    register_secret(KNOWN)
    script = tmp_path / "hostile.txt"
    script.write_text(HOSTILE)
    offer = BuildOffer(f"cat {script}; echo; exit 3", "1.0", "reg/app:1.0", tmp_path, "")
    lines: list[str] = []
    result = run_build(offer, timeout=30, on_line=lines.append)
    assert not result.ok and len(lines) == 2
    # Output lines stay lines (each printed behind "  build: "), so the forged text is a
    # line of its own here; no secret and no control character gets through.
    for text in (*lines, result.output_tail):
        assert [leak for leak in raw_leaks(text) if leak != "forged line"] == []


def test_an_unexpected_exceptions_log_line_is_one_scrubbed_line(tmp_path) -> None:
    """`log.exception` in the engine (an unexpected error in one cluster's deploy) reaches
    stderr as one scrubbed line through the CLI's handler, never as a raw traceback."""
    code = (
        "import logging, sys\n"
        "from console.redact import log_to_stderr\n"
        "log_to_stderr()\n"
        "try:\n"
        "    raise RuntimeError(sys.argv[1])\n"
        "except RuntimeError:\n"
        "    logging.getLogger('console.engine.deploy').exception('deploying a failed')\n")
    out = subprocess.run([sys.executable, "-c", code, HOSTILE], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "VAULT_TOKEN": KNOWN})
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("release-console: error: deploying a failed: RuntimeError")
    assert raw_leaks(out.stderr) == []


# Pieces of text each of the secret patterns needs, in several cases, and ordinary words.
_PIECES = ("https://", "user:pa55word@", "Authorization: ", "PROXY-AUTHORIZATION=", "Bearer ",
           "basic ", "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----", "TOKEN=",
           "passwd: ", "Secret=", "client-key-data: ", "certificate-authority-data=",
           "API_KEY=", "apikey: ", "eyJhbGciOiJIUzI1NiJ9", ".eyJzdWIiOiIxMjM0NTY3ODkw",
           "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", "abcdefghij0123456789+/", "=",
           "s3cr3t-Value_99", "rollout", " ", "\n", "\"", "'", ",", "}", "ready 2/3",
           # Letters `re.IGNORECASE` folds onto ASCII ones (s, i, k) and `str.lower` does not.
           "pa\u017fsword=", "\u017fecret: ", "AP\u0130_KEY=", "ap\u0131_key=",
           "api\u212aey: ", "ba\u017fic ")


def test_the_first_look_skips_only_text_no_secret_pattern_changes() -> None:
    """Scrubbing skips the secret patterns for text its cheap first look clears: every
    text the patterns would change must get past that look."""
    from hypothesis import given, settings, strategies as st
    from console import redact

    def full(text: str) -> str:
        for pattern, replacement in redact._SECRET_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    @settings(max_examples=3000, deadline=None)
    @given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=12), max_size=12))
    def check(parts: list[str]) -> None:
        text = "".join(parts)
        if full(text) != text:
            assert redact._maybe_secret(text), text

    check()
    assert redact._maybe_secret("x" * 59 + "A") is True
    assert redact._maybe_secret("Waiting for deployment rollout: 1 of 3 updated") is False


@pytest.mark.parametrize("text", ["pa\u017fsword=hunter2hunter2", "\u017fecret: s3cr3tvalue99",
                                  "AP\u0130_KEY=abcd1234efgh", "ap\u0131_key=abcd1234efgh",
                                  "Author\u0131zation: Digest abcdefgh123",
                                  "ba\u017fic dXNlcjpwYXNzd29yZA=="])
def test_text_the_patterns_mask_only_case_blind_is_masked(text: str) -> None:
    # The patterns are case-blind regexes: 'ſ' matches s, 'ı' and 'İ' match i. A first
    # look on `str.lower()` alone let these through unmasked.
    from console import redact
    masked = text
    for pattern, replacement in redact._SECRET_PATTERNS:
        masked = pattern.sub(replacement, masked)
    assert masked != text
    assert scrub(text) == masked


def test_secrets_in_the_environment_are_masked_as_soon_as_they_are_set(monkeypatch) -> None:
    value = "env-s3cret-set-late-0042"
    assert scrub(f"said {value}") == f"said {value}"
    monkeypatch.setenv("GITHUB_TOKEN", value)
    assert scrub(f"said {value}") == "said ***"
    monkeypatch.delenv("GITHUB_TOKEN")
    assert scrub(f"said {value}") == f"said {value}"
