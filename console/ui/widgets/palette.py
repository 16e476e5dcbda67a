"""The console's own colours, read from the current theme's variables.

Widgets that paint Rich text (grid cells, log lines) cannot use TCSS classes per cell,
so they take their colours from here; `Palette.of(app)` is cheap and is rebuilt when the
theme changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from textual.app import App

from console.ui.state import Phase
from console.ui.themes import STATUS_VARIABLES, variable_defaults


@dataclass(frozen=True)
class Palette:
    """Rich styles for phases, the production marker, drift and failures."""

    phases: dict[Phase, Style]
    production: Style
    drift: Style
    bad: Style
    dim: Style
    mark: Style

    @classmethod
    def of(cls, app: App) -> Palette:
        """The palette of the app's current theme (defaults for anything it leaves out)."""
        variables = {**variable_defaults(), **(app.theme_variables or {})}

        def colour(key: str) -> str:
            return variables[STATUS_VARIABLES[key][0]]

        phases = {p: Style(color=colour(p.value)) for p in Phase}
        # Failures must stand out even where colour is lost: bold as well.
        phases[Phase.FAILED] += Style(bold=True)
        phases[Phase.UNREACHABLE] += Style(bold=True)
        return cls(
            phases=phases,
            production=Style(color=colour("production"), bold=True),
            drift=Style(color=colour("drift"), bold=True),
            bad=Style(color=colour("failed")),
            dim=Style(dim=True),
            mark=Style(color=variables.get("accent", colour("drift")), bold=True),
        )
