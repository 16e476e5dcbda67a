"""Themes as data: the shipped ones load, bad files are reported together, users add their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.ui.state import PRODUCTION_GLYPH
from console.ui.themes import (DEFAULT_THEME, PROJECT_THEMES, STATUS_VARIABLES, load_themes,
                               parse_theme, theme_dirs)

from .ui_helpers import story, wait_for


def test_the_shipped_themes_load_with_every_console_colour() -> None:
    loaded = load_themes([PROJECT_THEMES])
    assert loaded.errors == ()
    names = {t.name for t in loaded.themes}
    assert {DEFAULT_THEME, "release-light", "release-high-contrast"} <= names
    for theme in loaded.themes:
        # Every phase, the production marker and drift have a colour of the theme's own.
        assert set(theme.variables) == {var for var, _default in STATUS_VARIABLES.values()}
    dark = next(t for t in loaded.themes if t.name == DEFAULT_THEME)
    assert dark.variables["production"] != dark.variables["status-healthy"]


def test_bad_theme_files_are_all_reported_and_good_ones_still_load(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("name: mine\ncolors: {primary: '#123456'}\n"
                                        "status: {production: magenta}\n")
    (tmp_path / "typo.yaml").write_text("name: typo\ncolors: {primary: '#123456', primery: red}\n")
    (tmp_path / "colour.yaml").write_text("name: c\ncolors: {primary: not-a-colour}\n")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    loaded = load_themes([PROJECT_THEMES, tmp_path])
    assert "mine" in {t.name for t in loaded.themes}
    assert len(loaded.errors) == 3
    text = "\n".join(loaded.errors)
    assert "typo.yaml: colors.primery: unknown colour" in text
    assert "colour.yaml: colors.primary: 'not-a-colour' is not a colour" in text
    assert "broken.yaml" in text


def test_a_theme_needs_a_name_and_a_primary_colour() -> None:
    with pytest.raises(ValueError, match="name"):
        parse_theme("colors: {primary: red}")
    with pytest.raises(ValueError, match="colors.primary: required"):
        parse_theme("name: x")
    with pytest.raises(ValueError, match="unknown key 'colours'"):
        parse_theme("name: x\ncolours: {primary: red}")


def test_user_theme_directories_come_from_the_environment(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELEASE_CONSOLE_THEME_PATH", f"{tmp_path}/a:{tmp_path}/b")
    dirs = theme_dirs(tmp_path)
    assert dirs[0] == PROJECT_THEMES
    assert dirs[-2:] == [tmp_path / "a", tmp_path / "b"]
    assert tmp_path / "themes" in dirs


@story
async def test_the_console_uses_the_chosen_theme_and_reports_bad_files(
        console_fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from console.ui.app import ReleaseConsoleApp

    themes = tmp_path / "user-themes"
    themes.mkdir()
    (themes / "bad.yaml").write_text("name: bad\ncolors: {primary: nope}\n")
    (themes / "worse.yaml").write_text("colors: {primary: red}\n")
    monkeypatch.setenv("RELEASE_CONSOLE_THEME_PATH", str(themes))
    monkeypatch.setenv("RELEASE_CONSOLE_THEME", "release-high-contrast")
    config, _fleet = console_fleet(["prod-eu"])
    app = ReleaseConsoleApp(config, status_interval=0)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: bool(app._notifications), what="a notification")
        assert app.theme == "release-high-contrast"
        notes = list(app._notifications)
        assert len(notes) == 1  # every failure in one notification
        assert "bad.yaml" in notes[0].message and "worse.yaml" in notes[0].message
        # Production is marked by a glyph, not only by a colour.
        assert PRODUCTION_GLYPH in app.fleet.grid.cell_text("prod-eu", "cluster")
        app.theme = "release-light"
        await wait_for(pilot, lambda: app.get_css_variables()["production"] == "#bf3989",
                       what="the light theme's colours")

