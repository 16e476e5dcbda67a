"""Freeze windows: the `freeze:` section's strict parsing, and the pure queries of
`console.freeze` at pinned instants (no clock, no sleeps) - dated windows with Z or an
offset, recurring windows across midnight and across daylight-saving changes."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from console import freeze
from console.config import load
from console.errors import ConfigError

FLEET = """\
app:
  name: web
  image: registry.example.com/apps/web
clusters:
  - id: stage
    groups: [staging]
  - id: eu
    groups: [prod, eu]
  - id: us
    groups: [prod, us]
"""

YEAR_END = """\
  - name: year-end
    groups: [prod]
    from: 2026-12-20T00:00:00Z
    to: "2027-01-04T08:00:00+01:00"
    reason: year-end change freeze
"""
# The example fleet file's weekend window (also the console header's test).
WEEKEND = """\
  - name: weekend
    days: [sat, sun]
    start: "18:00"
    end: "08:00"
    timezone: Europe/Berlin
    reason: no weekend releases
"""
WINDOWS = "freeze:\n" + YEAR_END + WEEKEND


def fleet(tmp_path: Path, extra: str = WINDOWS):
    path = tmp_path / "clusters.yaml"
    path.write_text(FLEET + textwrap.dedent(extra))
    return load(path)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def error_of(tmp_path: Path, extra: str) -> str:
    path = tmp_path / "clusters.yaml"
    path.write_text(FLEET + textwrap.dedent(extra))
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    return message.removeprefix(str(path))


# --------------------------------------------------------------------------- parsing


def test_windows_load(tmp_path):
    config = fleet(tmp_path)
    year_end, weekend = config.freeze
    assert year_end.name == "year-end" and year_end.groups == ("prod",)
    assert year_end.start == utc("2026-12-20T00:00:00+00:00")
    assert year_end.end == utc("2027-01-04T07:00:00+00:00")
    assert not year_end.recurring
    assert weekend.recurring and weekend.days == (5, 6) and weekend.groups == ()
    assert weekend.timezone == "Europe/Berlin" and str(weekend.daily_start) == "18:00:00"


def test_no_freeze_section_means_no_windows(tmp_path):
    assert fleet(tmp_path, "").freeze == ()


@pytest.mark.parametrize("extra, expected", [
    ("freeze: {name: x}\n", ":11: freeze: expected a list of freeze windows, got a mapping"),
    ("freeze:\n  - name: x\n    from: 2026-12-20T00:00:00\n    to: 2026-12-21T00:00:00Z\n"
     "    reason: r\n",
     ":13: freeze[0].from: 2026-12-20T00:00:00 has no time zone: add Z (UTC) or an offset"),
    ("freeze:\n  - name: x\n    from: 2026-12-20\n    to: 2026-12-21T00:00:00Z\n"
     "    reason: r\n", ":13: freeze[0].from: 2026-12-20: give a time and Z or an offset"),
    ("freeze:\n  - name: x\n    from: soon\n    to: 2026-12-21T00:00:00Z\n    reason: r\n",
     ":13: freeze[0].from: expected an ISO 8601 time with Z or an offset"),
    ("freeze:\n  - name: x\n    from: 2026-12-21T00:00:00Z\n    to: 2026-12-20T00:00:00Z\n"
     "    reason: r\n", ":14: freeze[0].to: 2026-12-20T00:00:00+00:00 is not after `from`"),
    ("freeze:\n  - name: x\n    groups: [prd]\n    from: 2026-12-20T00:00:00Z\n"
     "    to: 2026-12-21T00:00:00Z\n    reason: r\n",
     ":13: freeze[0].groups[0]: unknown group 'prd' (did you mean 'prod'?)"),
    ("freeze:\n  - name: x\n    from: 2026-12-20T00:00:00Z\n    to: 2026-12-21T00:00:00Z\n",
     ":12: freeze[0]: missing required key 'reason'"),
    ("freeze:\n  - name: x\n    days: [sat]\n    start: 18:00\n    end: \"08:00\"\n"
     "    reason: r\n", ":14: freeze[0].start: 1080: write the time in quotes"),
    ("freeze:\n  - name: x\n    days: [sat]\n    start: \"25:00\"\n    end: \"08:00\"\n"
     "    reason: r\n", ":14: freeze[0].start: expected a time of day HH:MM"),
    ("freeze:\n  - name: x\n    days: [saturday, sonday]\n    start: \"18:00\"\n"
     "    end: \"08:00\"\n    reason: r\n", ":13: freeze[0].days[1]: expected a day"),
    ("freeze:\n  - name: x\n    days: [sat]\n    start: \"18:00\"\n    end: \"08:00\"\n"
     "    timezone: Europe/Berln\n    reason: r\n",
     ":16: freeze[0].timezone: unknown time zone 'Europe/Berln'"),
    ("freeze:\n  - name: x\n    days: [sat]\n    start: \"18:00\"\n    end: \"08:00\"\n"
     "    from: 2026-12-20T00:00:00Z\n    reason: r\n",
     ":12: freeze[0]: a window is dated (from, to) or recurring"),
    ("freeze:\n  - name: x\n    from: 2026-12-20T00:00:00Z\n    to: 2026-12-21T00:00:00Z\n"
     "    reason: r\n    until: never\n", ":16: freeze[0].until: unknown key"),
    ("freeze:\n  - name: x\n    from: 2026-12-20T00:00:00Z\n    to: 2026-12-21T00:00:00Z\n"
     "    reason: r\n  - name: x\n    from: 2026-12-22T00:00:00Z\n"
     "    to: 2026-12-23T00:00:00Z\n    reason: r\n",
     ":16: freeze[1].name: duplicate window name 'x' (also at line 12)"),
])
def test_errors_name_file_line_and_field(tmp_path, extra, expected):
    assert expected in error_of(tmp_path, extra)


# --------------------------------------------------------------------------- queries


def test_dated_window_covers_its_groups_only_between_from_and_to(tmp_path):
    config = fleet(tmp_path)
    eu, stage = config.cluster("eu"), config.cluster("stage")
    inside = utc("2026-12-22T12:00:00+00:00")   # a Tuesday
    assert [o.name for o in freeze.covering(config.freeze, eu, inside)] == ["year-end"]
    assert freeze.covering(config.freeze, stage, inside) == []
    # `to` is exclusive and honours its offset (08:00+01:00 is 07:00Z).
    assert freeze.covering(config.freeze, eu, utc("2027-01-04T06:59:59+00:00"))
    assert not freeze.covering(config.freeze, eu, utc("2027-01-04T07:00:00+00:00"))
    dated = [w for w in config.freeze if not w.recurring]   # the 19th is a Saturday
    assert not freeze.covering(dated, eu, utc("2026-12-19T23:59:59+00:00"))


def test_recurring_window_crosses_midnight(tmp_path):
    config = fleet(tmp_path)
    us = config.cluster("us")
    # Saturday 2026-11-28, Berlin is UTC+1 in winter: 18:00 local is 17:00Z.
    assert not freeze.covering(config.freeze, us, utc("2026-11-28T16:59:00+00:00"))
    assert [o.name for o in freeze.covering(config.freeze, us,
                                            utc("2026-11-28T17:00:00+00:00"))] == ["weekend"]
    # Sunday 03:00 local: still the window that opened on Saturday.
    occ = freeze.covering(config.freeze, us, utc("2026-11-29T02:00:00+00:00"))[0]
    assert occ.start == utc("2026-11-28T17:00:00+00:00")
    assert occ.end == utc("2026-11-29T07:00:00+00:00")
    # Sunday evening opens again and lasts into Monday morning.
    assert freeze.covering(config.freeze, us, utc("2026-11-30T06:59:00+00:00"))
    assert not freeze.covering(config.freeze, us, utc("2026-11-30T07:00:00+00:00"))
    # Friday night is not a weekend night.
    assert not freeze.covering(config.freeze, us, utc("2026-11-27T22:00:00+00:00"))


def test_recurring_window_follows_daylight_saving(tmp_path):
    config = fleet(tmp_path, "freeze:\n" + WEEKEND + YEAR_END)
    weekend = [w for w in config.freeze if w.name == "weekend"]
    # Summer (CEST, UTC+2): Saturday 2026-07-04 18:00 local is 16:00Z.
    assert freeze.active(weekend, utc("2026-07-04T16:00:00+00:00"))
    assert not freeze.active(weekend, utc("2026-07-04T15:59:00+00:00"))
    # The night the clocks go back (Sunday 2026-10-25 03:00 CEST -> 02:00 CET): the
    # Saturday window opened 16:00Z (CEST) and closes 07:00Z (08:00 CET) - 15 hours.
    occ = freeze.active(weekend, utc("2026-10-25T01:30:00+00:00"))[0]
    assert occ.start == utc("2026-10-24T16:00:00+00:00")
    assert occ.end == utc("2026-10-25T07:00:00+00:00")
    # The night the clocks go forward (Sunday 2026-03-29 02:00 CET -> 03:00 CEST): opened
    # 17:00Z (CET) on Saturday, closes 06:00Z (08:00 CEST) - 13 hours.
    occ = freeze.active(weekend, utc("2026-03-29T05:59:00+00:00"))[0]
    assert occ.start == utc("2026-03-28T17:00:00+00:00")
    assert occ.end == utc("2026-03-29T06:00:00+00:00")


def test_a_window_in_the_spring_forward_gap_opens_after_the_gap(tmp_path):
    config = fleet(tmp_path, "freeze:\n  - name: night\n    days: [sun]\n"
                   "    start: \"02:30\"\n    end: \"04:00\"\n    timezone: Europe/Berlin\n"
                   "    reason: r\n")
    # 02:30 does not exist on 2026-03-29 in Berlin; it reads as 03:30 CEST = 01:30Z.
    occ = freeze.next_window(config.freeze, utc("2026-03-28T12:00:00+00:00"))
    assert occ is not None and occ.start == utc("2026-03-29T01:30:00+00:00")
    assert occ.end == utc("2026-03-29T02:00:00+00:00")


def test_equal_start_and_end_is_a_whole_day(tmp_path):
    config = fleet(tmp_path, "freeze:\n  - name: sundays\n    days: [sun]\n"
                   "    start: \"00:00\"\n    end: \"00:00\"\n    reason: r\n")
    assert freeze.active(config.freeze, utc("2026-11-29T00:00:00+00:00"))
    assert freeze.active(config.freeze, utc("2026-11-29T23:59:59+00:00"))
    assert not freeze.active(config.freeze, utc("2026-11-30T00:00:00+00:00"))


def test_next_window(tmp_path):
    config = fleet(tmp_path)
    # Tuesday 2026-12-01: the weekend opens before the year-end freeze.
    now = utc("2026-12-01T10:00:00+00:00")
    occ = freeze.next_window(config.freeze, now)
    assert occ is not None and occ.name == "weekend"
    assert occ.start == utc("2026-12-05T17:00:00+00:00")
    # Only over the staging cluster: still the weekend (whole fleet).
    stage = [config.cluster("stage")]
    assert freeze.next_window(config.freeze, now, stage).name == "weekend"
    # After the weekend of the 19th/20th: the year-end window opens at 2026-12-20 00:00Z,
    # which is inside Saturday's weekend stretch; the next to *open* is the year-end.
    occ = freeze.next_window(config.freeze, utc("2026-12-19T20:00:00+00:00"))
    assert occ.name == "year-end"
    # Past every dated window and without recurring ones: none.
    only_dated = [w for w in config.freeze if not w.recurring]
    assert freeze.next_window(only_dated, utc("2027-02-01T00:00:00+00:00")) is None


def test_blocking_names_windows_and_clusters_and_honours_ignore(tmp_path):
    config = fleet(tmp_path)
    clusters = [config.cluster(c) for c in config.ids]
    now = utc("2026-12-19T20:00:00+00:00")    # Saturday evening, before the year-end
    blocks = freeze.blocking(config.freeze, clusters, now)
    assert [(b.occurrence.name, b.clusters) for b in blocks] == [
        ("weekend", ("stage", "eu", "us"))]
    now = utc("2026-12-20T03:00:00+00:00")    # Sunday night in the year-end freeze
    blocks = freeze.blocking(config.freeze, clusters, now)
    assert [(b.occurrence.name, b.clusters) for b in blocks] == [
        ("year-end", ("eu", "us")), ("weekend", ("stage", "eu", "us"))]
    assert "freeze window 'year-end'" in blocks[0].describe()
    assert "covers eu, us" in blocks[0].describe()
    assert freeze.blocking(config.freeze, clusters, now, ignore=("year-end", "weekend")) == []


def test_headline(tmp_path):
    config = fleet(tmp_path)
    # `frozen` says whether a window is open now: the header styles by it, not by text.
    assert freeze.headline(config.freeze, utc("2026-12-01T10:00:00+00:00")) == freeze.Headline(
        "next freeze: weekend 2026-12-05 17:00Z - 2026-12-06 07:00Z (whole fleet)",
        frozen=False)
    assert freeze.headline(config.freeze, utc("2026-12-22T10:00:00+00:00")) == freeze.Headline(
        "FROZEN: year-end until 2027-01-04 07:00Z (prod)", frozen=True)
    assert freeze.headline((), utc("2026-12-22T10:00:00+00:00")) == freeze.Headline("", False)


def test_naive_now_is_refused(tmp_path):
    config = fleet(tmp_path)
    with pytest.raises(ValueError):
        freeze.active(config.freeze, datetime(2026, 12, 1) + timedelta(hours=1))


def _documented_windows(tmp_path):
    """The `freeze:` example of docs/config.md, loaded as a fleet file's."""
    text = (Path(__file__).parent.parent / "docs" / "config.md").read_text()
    block = next(b.split("```", 1)[0] for b in text.split("```yaml\n")
                 if b.startswith("freeze:"))
    path = tmp_path / "clusters.yaml"
    path.write_text(FLEET + block)
    return load(path)


def test_the_documented_weekend_example_freezes_weekend_daytime_too(tmp_path):
    config = _documented_windows(tmp_path)
    eu = config.cluster("eu")
    # Saturday 2026-12-05 and Sunday 12:00 Berlin (11:00Z): "no weekend releases" holds.
    for noon in ("2026-12-05T11:00:00+00:00", "2026-12-06T11:00:00+00:00"):
        assert "weekend" in [o.name for o in freeze.covering(config.freeze, eu, utc(noon))]
    # Friday 18:00 to Monday 08:00 local is frozen throughout; Monday 08:00 is open.
    start, end = utc("2026-12-04T17:00:00+00:00"), utc("2026-12-07T07:00:00+00:00")
    moment = start
    while moment < end:
        assert freeze.covering(config.freeze, eu, moment), moment
        moment += timedelta(minutes=30)
    assert not freeze.covering(config.freeze, eu, end)
