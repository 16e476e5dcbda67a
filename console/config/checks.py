"""Value checks for the fleet file: typed accessors that fail with `file:line: field`.

`Checker` reads the converted YAML (see `console.config.yaml_reader`) and turns every
wrong value into a `ConfigError` naming the file, the line and the dotted field path.
The parsers of durations and failure budgets are public: the CLI and the planner use
them too.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from console.config.yaml_reader import Path_, YamlDocument, dotted
from console.errors import ConfigError, ValidationError
from console.names import show, validate_dns_label

T = TypeVar("T")


def did_you_mean(word: str, choices: Any) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def kind_of(value: Any) -> str:
    """How a wrong value reads in a message: `nothing`, `a mapping`, `'prd'`."""
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    return show(value)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PLACEHOLDER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
IMAGE_REPO = re.compile(
    r"(?:(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)")


def parse_pace(value: Any) -> tuple[int, float]:
    """`10/30s` -> (10, 30.0): at most N cluster starts in any DURATION-long window
    (`max_starts`, `deploy --pace`); ValueError if not one."""
    if not isinstance(value, str) or value.count("/") != 1:
        raise ValueError("a pace")
    count, _, window = value.partition("/")
    if not count.strip().isdigit() or int(count) < 1:
        raise ValueError("a pace")
    return int(count), parse_duration(window)


def is_zero_duration(value: Any) -> bool:
    """`0`, `0s`, `0m`: no time at all (a bake that is turned off)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return value == 0
    return isinstance(value, str) and bool(re.fullmatch(r"\s*0+(?:\.0*)?\s*[smh]?\s*", value))


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `90s`, `10m`, `1h`, `1h30m`, `500ms`; ValueError if not one."""
    if isinstance(value, bool):
        raise ValueError("a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            pos, seconds = 0, 0.0
            for m in _DURATION_PART.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
                pos = m.end()
            if pos != len(text) or pos == 0:
                raise ValueError("a duration")
    else:
        raise ValueError("a duration")
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError("a positive duration")
    return seconds


def parse_failure_budget(value: Any) -> str:
    """Normalise a failure budget: a whole number >= 0 (`"2"`) or a percentage
    (`"10%"`, 0-100). ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        if value < 0:
            raise ValueError
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return str(int(text))
        m = PERCENT.fullmatch(text)
        if m and 0 <= float(m.group(1)) <= 100:
            number = float(m.group(1))
            return f"{int(number) if number.is_integer() else number}%"
    raise ValueError


def failure_budget_count(budget: str | None, total: int) -> int:
    """How many failures a budget allows among `total` clusters (percent rounds down)."""
    if budget is None:
        return 0
    if budget.endswith("%"):
        return int(float(budget[:-1]) * total // 100)
    return int(budget)


class Checker:
    """Reads the converted data with typed accessors that fail with file:line: path."""

    def __init__(self, doc: YamlDocument, source: str, base: Path) -> None:
        self.conv = doc
        self.source = source
        self.base = base

    def fail(self, path: Path_, message: str, *, at_key: bool = False) -> ConfigError:
        line = (self.conv.key_lines.get(path) if at_key else None) or self.conv.line(path)
        where = f"{self.source}:{line}" if line else self.source
        name = dotted(path) or "top level"
        return ConfigError(f"{where}: {name}: {message}")

    def mapping(self, value: Any, path: Path_, allowed: tuple[str, ...],
                required: tuple[str, ...] = (), what: str = "a mapping") -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected {what}, got {kind_of(value)}")
        for key in value:
            if key not in allowed:
                raise self.fail((*path, key), "unknown key" + did_you_mean(key, allowed)
                                + f"; allowed: {', '.join(allowed)}", at_key=True)
        for key in required:
            if value.get(key) is None:
                raise self.fail(path, f"missing required key {key!r}")
        return value

    def free_mapping(self, value: Any, path: Path_) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {kind_of(value)}")
        return value

    def string(self, value: Any, path: Path_, default: str | None = None,
               what: str = "a string") -> str | None:
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected {what}, got {kind_of(value)}")
        return value

    def text(self, value: Any, path: Path_, what: str = "a string") -> str:
        """A required non-empty string."""
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected {what}, got {kind_of(value)}")
        return value

    def boolean(self, value: Any, path: Path_, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {kind_of(value)}")
        return value

    def integer(self, value: Any, path: Path_, default: int | None, minimum: int,
                maximum: int | None = None) -> int | None:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
                maximum is not None and value > maximum):
            bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise self.fail(path, f"expected a whole number {bound}, got {kind_of(value)}")
        return value

    def parsed(self, value: Any, path: Path_, parse: Callable[[Any], T], expected: str) -> T:
        """`parse(value)`, or a failure naming what was `expected` when it cannot."""
        try:
            return parse(value)
        except ValueError:
            raise self.fail(path, f"expected {expected}, got {kind_of(value)}") from None

    def duration(self, value: Any, path: Path_, default: float) -> float:
        if value is None:
            return default
        return self.parsed(value, path, parse_duration,
                           "a duration such as 90s, 10m, 1h or plain seconds")

    def names(self, value: Any, path: Path_, what: str = "a list of names") -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(path, f"expected {what}, got {kind_of(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise self.fail((*path, i), f"expected a name, got {kind_of(item)}")
        return tuple(value)

    def dns_label(self, value: Any, path: Path_) -> str:
        try:
            return validate_dns_label(value, field="name")
        except ValidationError as exc:
            raise self.fail(path, str(exc).removeprefix("name: ")) from None

    def env_name(self, value: Any, path: Path_, default: str | None = None) -> str | None:
        text = self.string(value, path, default, what="an environment variable name")
        if text is not None and not _ENV_NAME.fullmatch(text):
            raise self.fail(path, f"{show(text)} is not an environment variable name")
        return text

    def file_path(self, value: Any, path: Path_) -> Path | None:
        text = self.string(value, path, what="a path")
        if text is None:
            return None
        return resolve_path(text, self.base)


def or_empty(value: Any) -> Any:
    """An absent (null) section reads as an empty mapping; anything else is checked."""
    return {} if value is None else value


def resolve_path(text: str, base: Path) -> Path:
    """`~` expanded; a relative path taken from `base` (the fleet file's directory)."""
    p = Path(text).expanduser()
    return p if p.is_absolute() else Path(os.path.normpath(base / p))


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: mappings merge key by key, anything else
    (lists included) replaces."""
    out = {key: _copied(value) for key, value in base.items()}
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = _copied(value)
    return out


# Values as the fleet file's reader makes them; the scalars are immutable, so shared.
_SCALARS = (str, int, float, bool, type(None))


def _copied(value: Any) -> Any:
    """A deep copy of `value`. The fleet file's mappings, lists and scalars are copied
    by hand: `copy.deepcopy` (its memo, its dispatch) was most of reading the values of
    1,000 clusters, each a merge of `defaults`. Anything else goes to `copy.deepcopy`."""
    kind = type(value)
    if kind is dict:
        return {key: _copied(item) for key, item in value.items()}
    if kind is list:
        return [_copied(item) for item in value]
    if kind in _SCALARS:
        return value
    return copy.deepcopy(value)


def is_glob(entry: str) -> bool:
    """True when a selector term or wave entry is a shell-style pattern."""
    return any(ch in entry for ch in "*?[")


def image_registry_host(image: str) -> str | None:
    """The registry host (with port) of an image repository, None for Docker Hub:
    `127.0.0.1:5000/web` -> `127.0.0.1:5000`, `apps/web` -> None (Docker's rule: the
    first part is a host when it has a dot or a port, or is `localhost`)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def is_loopback_host(host: str) -> bool:
    """Whether `host[:port]` is this machine (`localhost`, 127.0.0.0/8, ::1)."""
    hostname = urlsplit(f"//{host}").hostname or ""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False
