"""The fleet file's `freeze:` section: dated and recurring freeze windows.

    freeze:
      - name: year-end
        groups: [prod]                 # left out: the whole fleet
        from: 2026-12-20T00:00:00Z     # ISO 8601 with Z or an offset
        to: 2027-01-04T08:00:00+01:00
        reason: year-end change freeze
      - name: weekend
        days: [sat, sun]               # the days it opens
        start: "18:00"                 # local time in `timezone` (quoted: YAML reads
        end: "08:00"                   #   an unquoted 18:00 as a number)
        timezone: Europe/Berlin        # IANA name (zoneinfo); default UTC
        reason: no weekend releases

A recurring window whose `end` is not after its `start` closes the next day (equal:
24 hours later). Every mistake is a `ConfigError` naming the file, line and field.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from console.config.checks import Checker, did_you_mean, kind_of
from console.config.model import DAY_NAMES, Cluster, FreezeWindow
from console.config.yaml_reader import Path_
from console.names import show

_LONG_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DATED_KEYS = ("name", "groups", "from", "to", "reason")
_RECURRING_KEYS = ("name", "groups", "days", "start", "end", "timezone", "reason")
_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


def freeze_section(ck: Checker, raw: Any, clusters: tuple[Cluster, ...]
                   ) -> tuple[FreezeWindow, ...]:
    """Parse `freeze:` (absent: no windows)."""
    p: Path_ = ("freeze",)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ck.fail(p, f"expected a list of freeze windows, got {kind_of(raw)}")
    groups = sorted({g for c in clusters for g in c.groups})
    out: list[FreezeWindow] = []
    first_line: dict[str, int] = {}
    for i, item in enumerate(raw):
        wp: Path_ = (*p, i)
        recurring = isinstance(item, dict) and any(
            k in item for k in ("days", "start", "end", "timezone"))
        allowed = _RECURRING_KEYS if recurring else _DATED_KEYS
        if isinstance(item, dict) and recurring and ("from" in item or "to" in item):
            raise ck.fail(wp, "a window is dated (from, to) or recurring (days, start, "
                          "end, timezone), not both")
        required = ("name", "days", "start", "end", "reason") if recurring \
            else ("name", "from", "to", "reason")
        item = ck.mapping(item, wp, allowed, required=required,
                          what="a freeze window (name, from, to, reason or name, days, "
                               "start, end, timezone, reason)")
        name = ck.text(item["name"], (*wp, "name"), what="a window name")
        if name in first_line:
            raise ck.fail((*wp, "name"), f"duplicate window name {show(name)} (also at "
                          f"line {first_line[name]})")
        first_line[name] = ck.conv.lines.get((*wp, "name"), 0)
        window_groups = ck.names(item.get("groups"), (*wp, "groups"),
                                 what="a list of groups")
        for j, group in enumerate(window_groups):
            if group not in groups:
                raise ck.fail((*wp, "groups", j), f"unknown group {show(group)}"
                              + did_you_mean(group, groups))
        reason = ck.text(item["reason"], (*wp, "reason"), what="a reason")
        line = ck.conv.lines.get(wp, 0)
        if recurring:
            zone = ck.text(item.get("timezone", "UTC"), (*wp, "timezone"),
                           what="an IANA time zone such as Europe/Berlin")
            _zone(ck, zone, (*wp, "timezone"))
            out.append(FreezeWindow(
                name=name, groups=window_groups, reason=reason,
                days=_days(ck, item["days"], (*wp, "days")),
                daily_start=_clock(ck, item["start"], (*wp, "start")),
                daily_end=_clock(ck, item["end"], (*wp, "end")), timezone=zone, line=line))
        else:
            start = _instant(ck, item["from"], (*wp, "from"))
            end = _instant(ck, item["to"], (*wp, "to"))
            if end <= start:
                raise ck.fail((*wp, "to"), f"{end.isoformat()} is not after `from` "
                              f"({start.isoformat()})")
            out.append(FreezeWindow(name=name, groups=window_groups, reason=reason,
                                    start=start, end=end, line=line))
    return tuple(out)


def _instant(ck: Checker, value: Any, path: Path_) -> datetime:
    """An aware datetime from ISO 8601 text (or what YAML made of it)."""
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    elif isinstance(value, date):
        raise ck.fail(path, f"{value.isoformat()}: give a time and Z or an offset too, "
                      f"e.g. {value.isoformat()}T00:00:00Z")
    if moment is None:
        raise ck.fail(path, "expected an ISO 8601 time with Z or an offset, e.g. "
                      f"2026-12-20T18:00:00+01:00, got {kind_of(value)}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ck.fail(path, f"{moment.isoformat()} has no time zone: add Z (UTC) or an "
                      "offset such as +01:00")
    return moment


def _clock(ck: Checker, value: Any, path: Path_) -> time:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 18:00 as the base-60 number 1080.
        raise ck.fail(path, f"{value}: write the time in quotes, e.g. \"18:00\"")
    match = _CLOCK.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ck.fail(path, f"expected a time of day HH:MM, e.g. \"18:00\", got "
                      f"{kind_of(value)}")
    return time(int(match.group(1)), int(match.group(2)))


def _days(ck: Checker, value: Any, path: Path_) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ck.fail(path, f"expected a list of days such as [sat, sun], got "
                      f"{kind_of(value)}")
    out: list[int] = []
    for i, day in enumerate(value):
        text = day.strip().lower() if isinstance(day, str) else None
        if text in DAY_NAMES:
            number = DAY_NAMES.index(text)
        elif text in _LONG_DAYS:
            number = _LONG_DAYS.index(text)
        else:
            raise ck.fail((*path, i), f"expected a day ({', '.join(DAY_NAMES)}), got "
                          f"{kind_of(day)}" + did_you_mean(str(day).lower(), DAY_NAMES))
        if number in out:
            raise ck.fail((*path, i), f"{show(day)} is listed twice")
        out.append(number)
    return tuple(sorted(out))


def _zone(ck: Checker, name: str, path: Path_) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ck.fail(path, f"unknown time zone {show(name)} (an IANA name such as "
                      "Europe/Berlin or UTC)") from None
