"""Colour themes as data: every `*.yaml` in the theme directories becomes a Textual theme.

A theme file holds a `name`, `dark: true|false`, Textual's colours under `colors:`
(primary, secondary, accent, warning, error, success, foreground, background, surface,
panel, boost) and the console's own colours under `status:` - one per phase, plus
`production` (the production marker) and `drift`. The console's colours become theme
variables (`$status-healthy`, `$production`, `$drift`, ...) with defaults, so a theme
may leave any of them out. A file that cannot be read is skipped, and every such failure
is reported together (the app shows them in one notification).

Directories searched, later ones overriding earlier names: the project's `themes/`, a
`themes/` directory beside the fleet file, `~/.config/release-console/themes`, and each
directory in `$RELEASE_CONSOLE_THEME_PATH` (`:`-separated).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from textual.color import Color, ColorParseError
from textual.theme import Theme

DEFAULT_THEME = "release-dark"
THEME_ENV = "RELEASE_CONSOLE_THEME"
THEME_PATH_ENV = "RELEASE_CONSOLE_THEME_PATH"

PROJECT_THEMES = Path(__file__).resolve().parents[2] / "themes"
# Where a wheel (non-editable) install puts the same files: pyproject's data-files.
INSTALLED_THEMES = Path(sys.prefix) / "share" / "release-console" / "themes"
USER_THEMES = Path("~/.config/release-console/themes")

TEXTUAL_COLOURS = ("primary", "secondary", "accent", "warning", "error", "success",
                   "foreground", "background", "surface", "panel", "boost")

# The console's own colours, with the default used when a theme leaves one out (readable
# on dark and light backgrounds alike).
_DEFAULT_COLOURS = {
    "idle": "#8a8a8a", "checking": "#5fafd7", "waiting": "#af87d7", "rolling": "#2a9df4",
    "healthy": "#3fb950", "failed": "#f85149", "rolling_back": "#d29922",
    "rolled_back": "#e3b341", "skipped": "#8a8a8a", "unreachable": "#ff7b72",
    "production": "#ff5f87", "drift": "#ffaf00",
}
# Theme key -> (CSS variable, default): a phase's variable is `status-` and its name.
STATUS_VARIABLES: dict[str, tuple[str, str]] = {
    key: (key if key in ("production", "drift") else "status-" + key.replace("_", "-"), colour)
    for key, colour in _DEFAULT_COLOURS.items()}

_TOP_KEYS = {"name", "dark", "colors", "status", "description"}
# libyaml's safe loader when PyYAML has it: the themes are read before the first frame,
# and the pure-Python one took ~5 ms per theme file there.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class ThemeLoad:
    """What loading the theme directories gave: the themes and every failure."""

    themes: tuple[Theme, ...]
    errors: tuple[str, ...]


def variable_defaults() -> dict[str, str]:
    """Defaults of the console's theme variables (for `App.get_theme_variable_defaults`)."""
    return {var: default for var, default in STATUS_VARIABLES.values()}


def theme_dirs(config_dir: Path | None = None) -> list[Path]:
    """The directories searched for themes, in override order."""
    dirs = [PROJECT_THEMES] if PROJECT_THEMES.is_dir() else [INSTALLED_THEMES]
    if config_dir is not None and (config_dir / "themes").resolve() != PROJECT_THEMES:
        dirs.append(config_dir / "themes")
    dirs.append(USER_THEMES.expanduser())
    dirs.extend(Path(p).expanduser() for p in os.environ.get(THEME_PATH_ENV, "").split(":") if p)
    return dirs


def load_themes(dirs: Iterable[Path]) -> ThemeLoad:
    """Every theme in `dirs` (missing directories are fine), later names winning."""
    themes: dict[str, Theme] = {}
    errors: list[str] = []
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
            try:
                theme = parse_theme(path.read_text(encoding="utf-8"), path.name)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                errors.append(f"{path}: {_short(exc)}")
                continue
            themes[theme.name] = theme
    return ThemeLoad(tuple(themes.values()), tuple(errors))


def parse_theme(text: str, source: str = "<theme>") -> Theme:
    """One theme from its YAML text; raises ValueError naming the field at fault."""
    data = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader (C or Python)
    if not isinstance(data, Mapping):
        raise ValueError("a theme is a mapping with name, colors and status")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (expected one of {sorted(_TOP_KEYS)})")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name: a theme needs a name")
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ValueError("dark: must be true or false")
    colours = _section(data, "colors", TEXTUAL_COLOURS)
    if "primary" not in colours:
        raise ValueError("colors.primary: required")
    status = _section(data, "status", tuple(STATUS_VARIABLES))
    variables = {STATUS_VARIABLES[key][0]: value for key, value in status.items()}
    return Theme(name=name.strip(), dark=dark, variables=variables, **colours)


def _section(data: Mapping, key: str, allowed: tuple[str, ...]) -> dict[str, str]:
    section = data.get(key) or {}
    if not isinstance(section, Mapping):
        raise ValueError(f"{key}: must be a mapping")
    out: dict[str, str] = {}
    for name, value in section.items():
        norm = str(name).replace("-", "_")
        if norm not in allowed:
            raise ValueError(f"{key}.{name}: unknown colour (expected one of {', '.join(allowed)})")
        try:
            Color.parse(str(value))
        except ColorParseError:
            raise ValueError(f"{key}.{name}: {value!r} is not a colour") from None
        out[norm] = str(value)
    return out


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]
