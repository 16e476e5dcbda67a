"""Freeze windows in time: which window covers a cluster at an instant, and the next one.

Pure functions over the fleet file's `freeze:` windows (`console.config.FreezeWindow`)
and an aware "now" the caller passes in - nothing here reads the clock except
`utc_now()`, the default the engine uses, so tests pin any instant.

A recurring window is evaluated in its own time zone (zoneinfo), so it follows daylight
saving: "18:00 Europe/Berlin" is 17:00 UTC in winter and 16:00 UTC in summer. A local
time that does not exist (the spring-forward gap) opens the window at the first instant
after the gap; an ambiguous one (fall back) at its first occurrence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from console.config import Cluster, FreezeWindow

Clock = Callable[[], datetime]
_LOOKAHEAD_DAYS = 8   # a recurring window opens at least weekly


def utc_now() -> datetime:
    """The real time, aware, in UTC (the engine's default clock)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Occurrence:
    """One stretch of a window: from `start` to `end` (aware, UTC)."""

    window: FreezeWindow
    start: datetime
    end: datetime

    @property
    def name(self) -> str:
        """The window's name."""
        return self.window.name

    def describe(self) -> str:
        """`'nights' (2026-12-04 17:00Z - 2026-12-05 07:00Z: no releases overnight)` - a
        recurring window's occurrence lasts at most 24 hours (Friday 18:00 to Saturday
        08:00, Europe/Berlin, here)."""
        return f"{self.window.name!r} ({_short(self.start)} - {_short(self.end)}: " \
               f"{self.window.reason})"

    def to_json(self) -> dict[str, str | list[str]]:
        """For events, the ledger and `--json`."""
        return {"name": self.window.name, "start": _iso(self.start), "end": _iso(self.end),
                "reason": self.window.reason, "groups": list(self.window.groups)}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%MZ")


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("freeze: `now` must be an aware datetime")
    return now.astimezone(timezone.utc)


def _local_occurrence(window: FreezeWindow, day: date) -> Occurrence:
    """The stretch of a recurring window that opens on `day` (local date)."""
    assert window.daily_start is not None and window.daily_end is not None
    zone = ZoneInfo(window.timezone)
    opens = datetime.combine(day, window.daily_start, tzinfo=zone)
    closes_day = day if window.daily_end > window.daily_start else day + timedelta(days=1)
    closes = datetime.combine(closes_day, window.daily_end, tzinfo=zone)
    return Occurrence(window, _from_local(opens), _from_local(closes))


def _from_local(moment: datetime) -> datetime:
    """A local wall-clock time in UTC; a time in a spring-forward gap moves past the gap
    (Python maps it with the offset from before the change, i.e. later in real time)."""
    return moment.astimezone(timezone.utc)


def occurrences(window: FreezeWindow, now: datetime) -> Iterable[Occurrence]:
    """The window's stretches that may be open at `now` or open later, in time order
    (a recurring window: from the day before `now` for about a week)."""
    now = _aware(now)
    if not window.recurring:
        assert window.start is not None and window.end is not None
        yield Occurrence(window, window.start.astimezone(timezone.utc),
                         window.end.astimezone(timezone.utc))
        return
    local_day = now.astimezone(ZoneInfo(window.timezone)).date()
    for offset in range(-1, _LOOKAHEAD_DAYS):
        day = local_day + timedelta(days=offset)
        if day.weekday() in window.days:
            yield _local_occurrence(window, day)


def active(windows: Sequence[FreezeWindow], now: datetime) -> list[Occurrence]:
    """Every window open at `now` (start <= now < end), in file order."""
    now = _aware(now)
    out = []
    for window in windows:
        for occ in occurrences(window, now):
            if occ.start <= now < occ.end:
                out.append(occ)
                break
    return out


def covering(windows: Sequence[FreezeWindow], cluster: Cluster,
             now: datetime) -> list[Occurrence]:
    """The windows open at `now` whose scope includes `cluster`."""
    return [occ for occ in active(windows, now) if occ.window.covers(cluster.groups)]


def next_window(windows: Sequence[FreezeWindow], now: datetime,
                clusters: Sequence[Cluster] | None = None) -> Occurrence | None:
    """The window that opens next after `now` (over `clusters` when given), or None."""
    now = _aware(now)
    best: Occurrence | None = None
    for window in windows:
        if clusters is not None and not any(window.covers(c.groups) for c in clusters):
            continue
        for occ in occurrences(window, now):
            if occ.start > now:
                if best is None or occ.start < best.start:
                    best = occ
                break
    return best


@dataclass(frozen=True)
class Block:
    """An open window and the clusters of a release it freezes."""

    occurrence: Occurrence
    clusters: tuple[str, ...]

    def describe(self) -> str:
        """`freeze window 'weekend' (...) covers prod-eu, prod-us`."""
        return f"freeze window {self.occurrence.describe()} covers " \
               f"{', '.join(self.clusters)}"

    def to_json(self) -> dict[str, object]:
        """The window's fields and the clusters it freezes."""
        return {**self.occurrence.to_json(), "clusters": list(self.clusters)}


def blocking(windows: Sequence[FreezeWindow], clusters: Sequence[Cluster], now: datetime,
             ignore: Iterable[str] = ()) -> list[Block]:
    """The windows open at `now` that cover some of `clusters` (except the `ignore`d
    names, e.g. the windows an override was given for), each with the clusters it covers."""
    skip = set(ignore)
    out = []
    for occ in active(windows, now):
        if occ.window.name in skip:
            continue
        hit = tuple(c.id for c in clusters if occ.window.covers(c.groups))
        if hit:
            out.append(Block(occ, hit))
    return out


@dataclass(frozen=True)
class Headline:
    """A header's freeze line: `text` ('' for none), and whether a window is open now
    (`frozen`) or only the next one is named - a header styles by that, not by the text."""

    text: str = ""
    frozen: bool = False


def headline(windows: Sequence[FreezeWindow], now: datetime) -> Headline:
    """One line for a header: the open window(s), else the next one, else none."""
    if not windows:
        return Headline()
    now = _aware(now)
    open_now = active(windows, now)
    if open_now:
        return Headline("FROZEN: " + "; ".join(
            f"{o.window.name} until {_short(o.end)}{_scope(o.window)}" for o in open_now),
            frozen=True)
    upcoming = next_window(windows, now)
    if upcoming is None:
        return Headline()
    return Headline(f"next freeze: {upcoming.window.name} {_short(upcoming.start)} - "
                    f"{_short(upcoming.end)}{_scope(upcoming.window)}")


def _scope(window: FreezeWindow) -> str:
    return f" ({', '.join(window.groups)})" if window.groups else " (whole fleet)"
