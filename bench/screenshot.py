"""The README's screenshot, taken by the console itself (`App.save_screenshot`).

Serves the demo fleet (`clusters.yaml`) from the local simulator, releases v1.4.1
everywhere headless, then drives the console like an operator: `n`, canary, tag v1.4.2,
`enter`, approve both gates - with prod-us unable to pull the new image - and saves the
screen while the last wave rolls out and prod-us is rolled back. Writes
`docs/screenshot.svg`, and `docs/screenshot.png` when `rsvg-convert` is installed.

    .venv/bin/python bench/screenshot.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SIZE = (130, 36)


def demo_copy(directory: Path) -> Path:
    """The demo fleet file with absolute manifests and a ledger in `directory` (edited as
    text: a YAML round trip would turn `notify: {on: ...}` into `true:`)."""
    text = (ROOT / "clusters.yaml").read_text()
    for old, new in (("manifests: deploy/user-service",
                      f"manifests: {ROOT / 'deploy' / 'user-service'}"),
                     ("path: .release-history", f"path: {directory / 'history'}")):
        if old not in text:
            raise SystemExit(f"clusters.yaml no longer has {old!r}: update bench/screenshot.py")
        text = text.replace(old, new)
    path = directory / "clusters.yaml"
    path.write_text(text)
    return path


async def wait_for(pilot, predicate, timeout: float = 60.0) -> None:
    """Let the app run until `predicate()` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the console did not get there in time")
        await pilot.pause(0.05)


async def shoot(config, fleet, svg: Path) -> None:
    """Drive the console to an interesting moment and save the screen."""
    from console.ui.app import ReleaseConsoleApp
    from console.ui.screens.gate import GateScreen
    from console.ui.screens.release_form import ReleaseFormScreen
    from console.ui.state import Phase

    app = ReleaseConsoleApp(config, status_interval=0, operator="alice",
                            engine_options={"grace": 3.0})
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, app._engine_ready.is_set)
        await app.workers.wait_for_complete()
        fleet.set_faults("prod-us", never_pull=["v1.4.2"])
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ReleaseFormScreen))
        await pilot.click("#strategy-canary")
        await pilot.click("#tag")
        await pilot.press(*"v1.4.2", "enter")
        for _ in range(2):
            await wait_for(pilot, lambda: isinstance(app.screen, GateScreen))
            await pilot.pause(0.5)
            await pilot.press("a")
        rows = app.state.clusters
        await wait_for(pilot, lambda: rows["prod-us"].phase in (Phase.ROLLING_BACK,
                                                                Phase.ROLLED_BACK))
        app.fleet.grid.go_to("prod-us")
        await pilot.pause(0.4)
        app.save_screenshot(svg.name, path=str(svg.parent))
        await wait_for(pilot, lambda: not app.release_running, timeout=120)


def main() -> int:
    from console.config import load
    from console.engine import Engine, GateAnswer, GateDecision, ReleaseRequest
    from console.sim import SimFleet

    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    DOCS.mkdir(exist_ok=True)
    svg = DOCS / "screenshot.svg"
    with tempfile.TemporaryDirectory(prefix="rc-screenshot-") as tmp:
        source = demo_copy(Path(tmp))
        fleet = SimFleet.from_config(source, readiness_delay=0.6, jitter=0.8)
        fleet.start()
        try:
            config = load(fleet.write_kubeconfigs(Path(tmp) / "kube", config_path=source))
            engine = Engine(config)
            engine.run(ReleaseRequest(tag="v1.4.1", strategy="parallel"),
                       lambda _gate: GateAnswer(GateDecision.APPROVE))
            engine.close()
            asyncio.run(shoot(config, fleet, svg))
        finally:
            fleet.stop()
    print(f"wrote {svg.relative_to(ROOT)}")
    if shutil.which("rsvg-convert"):
        png = svg.with_suffix(".png")
        subprocess.run(["rsvg-convert", "--zoom", "1", str(svg), "-o", str(png)], check=True,
                       timeout=60)
        print(f"wrote {png.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
