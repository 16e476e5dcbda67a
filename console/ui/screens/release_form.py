"""`n` - a new release: targets, strategy, tag, the plan, then pre-flight as it runs.

The plan is rebuilt on every keystroke with the pure `console.plan` functions (no I/O),
so what the table shows is exactly what `enter` starts. Once started, the form stays
open through pre-flight, listing each check as its result arrives; it closes when
pre-flight passes, and stays (fields editable again) when it fails.

When the app has a build command (`app.build.command`), `enter` first asks the registry
(in a worker) whether the tag's image exists; a missing one is offered to be built, as
`deploy --build` does. The build runs in a worker, its output streams into the build
pane with the elapsed time, and the image is checked again before the release starts; a
failed build shows its last lines and starts nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import (Button, Checkbox, DataTable, Footer, Input, Label, RadioButton,
                             RadioSet, RichLog, Static)

from console.errors import UserError
from console.events import Event, Kind
from console.names import validate_tag
from console.plan import Plan, build_plan, select
from console.version_tag import app_repository, default_tag
from console.ui.messages import StartReleaseRequested
from console.ui.state import PRODUCTION_GLYPH, FleetState, Phase
from console.ui.widgets.build_pane import BuildPane
from console.ui.widgets.palette import Palette

if TYPE_CHECKING:
    from console.config import FleetConfig
    from console.engine import ReleaseRequest
    from console.ui.messages import ConsoleServices
    from console.version_tag import BuildOffer


class ReleaseFormScreen(Screen):
    """Choose what to release where, see the plan, start it."""

    app: ConsoleServices  # type: ignore[assignment] - what screens may read

    BINDINGS = [
        Binding("ctrl+s", "start", "start the release"),
        Binding("escape", "back", "back to the fleet"),
    ]

    def __init__(self, config: FleetConfig, state: FleetState, marked: list[str]) -> None:
        super().__init__(id="release-form")
        self.config = config
        self.state = state
        self.marked = marked
        self.plan: Plan | None = None
        self.problem: str | None = None
        self.default: str | None = None
        self.started = False
        self.release_id: str | None = None
        # Showing the events of the release started here: from `release_started` until
        # that release's RELEASE_FINISHED arrives, even after its run call ended (its
        # events can come later than the app's `release_ended`).
        self.following = False
        self.build_offer: tuple[ReleaseRequest, BuildOffer] | None = None
        self.busy = False   # an image check or a build is running in a worker

    # -- layout -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        strategies = ["serial", "parallel", *self.config.strategies]
        with VerticalScroll(id="form-body"):
            yield Static(f"[b]New release[/b] · {self.config.app.name}", id="form-title")
            with Horizontal(classes="field"):
                yield Label("Targets", classes="field-label")
                yield Input(", ".join(self.marked), id="targets", compact=True,
                            placeholder="all clusters · ids, groups, globs: prod-*, !prod-us")
            yield Static("", id="targets-preview", classes="field-help")
            with Horizontal(classes="field"):
                yield Label("Strategy", classes="field-label")
                with RadioSet(id="strategy", compact=True):
                    for i, name in enumerate(strategies):
                        yield RadioButton(name, value=i == 0, id=f"strategy-{name}")
            with Horizontal(classes="field", id="order-field"):
                yield Label("Order", classes="field-label")
                yield Input(id="order", compact=True, placeholder="serial order: a, b, c (default: config order)")
            with Horizontal(classes="field", id="limits-field"):
                yield Label("Max parallel", classes="field-label")
                yield Input(id="max-parallel", placeholder="default", type="integer", compact=True,
                            classes="short")
                yield Label("Max failures", classes="field-label")
                yield Input(id="max-failures", placeholder="number or %", classes="short",
                            compact=True)
            with Horizontal(classes="field"):
                yield Label("Tag", classes="field-label")
                yield Input(id="tag", placeholder="reading the Git commit…", compact=True)
            if self.config.freeze:
                # As `deploy --override-freeze --reason`: let the release through open
                # freeze windows, with a reason (the ledger and the notification keep it,
                # and who gave it as the cluster names them).
                with Horizontal(classes="field", id="override-field"):
                    yield Label("Freeze", classes="field-label")
                    yield Checkbox("override", id="override-freeze", compact=True)
                    yield Input(id="override-reason", compact=True,
                                placeholder="reason (required to override a freeze window)")
            yield Static("", id="form-problem", classes="field-help")
            yield Label("Plan", classes="section-title")
            yield DataTable(id="plan", cursor_type="none")
            yield BuildPane()
            with Vertical(id="preflight-box"):
                yield Label("Pre-flight", classes="section-title")
                yield RichLog(id="preflight", markup=False, wrap=True, max_lines=400)
            with Horizontal(id="form-buttons"):
                yield Button("Start release", id="start", variant="primary",
                             action="screen.start")
                yield Button("Back", id="back", action="screen.back")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#plan", DataTable)
        width = min(max((len(c) for c in self.state.clusters), default=8), 28) + 2
        table.add_column("#", width=4, key="pos")
        table.add_column("CLUSTER", width=width, key="cluster")
        table.add_column("WAVE", width=5, key="wave")
        table.add_column("GATE", width=5, key="gate")
        table.add_column("CURRENT → NEW", width=30, key="change")
        self.app.events_signal.subscribe(self, self._on_events)
        self._read_default_tag()
        self.query_one("#targets", Input).focus()
        self._replan()

    @work(thread=True, exit_on_error=False, group="default-tag")
    def _read_default_tag(self) -> None:
        # The headless default, the same everywhere: short commit + $BUILD_NUMBER, else
        # the ledger's next build number (console.version_tag).
        try:
            tags = [release.version for release in self.app.ledger().releases()]
        except UserError:
            tags = []   # no ledger yet: the first build number
        try:
            tag: str | None = default_tag(app_repository(self.config), tags)
        except UserError:
            tag = None  # not a Git repository: the tag must be typed
        self.app.call_from_thread(self._set_default_tag, tag)

    def _set_default_tag(self, tag: str | None) -> None:
        self.default = tag
        placeholder = f"default: {tag}" if tag else "type a tag (no Git commit found)"
        self.query_one("#tag", Input).placeholder = placeholder
        self._replan()

    # -- the plan -------------------------------------------------------------------

    @property
    def strategy(self) -> str:
        """The chosen strategy's name."""
        pressed = self.query_one("#strategy", RadioSet).pressed_button
        return str(pressed.label) if pressed is not None else "serial"

    @property
    def tag(self) -> str:
        """The typed tag, else the default."""
        return self.query_one("#tag", Input).value.strip() or (self.default or "")

    def _value(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value.strip()

    @on(Input.Changed)
    @on(RadioSet.Changed)
    def _changed(self) -> None:
        self._replan()

    def _replan(self) -> None:
        """Rebuild the targets preview and the plan from the fields."""
        strategy = self.strategy
        self.query_one("#order-field").display = strategy == "serial"
        self.query_one("#limits-field").display = strategy != "serial"
        preview = self.query_one("#targets-preview", Static)
        self.plan, self.problem = None, None
        try:
            targets = select(self.config, self._value("targets"))
        except UserError as exc:
            preview.update(Text(str(exc), Palette.of(self.app).bad))
            self._show_problem(str(exc))
            return
        prod = sum(1 for c in targets if c.production)
        names = ", ".join(c.id for c in targets[:12]) + (" …" if len(targets) > 12 else "")
        preview.update(f"{len(targets)} cluster{'s' * (len(targets) != 1)}"
                       + (f" ({prod} production {PRODUCTION_GLYPH})" if prod else "")
                       + f": {names}")
        try:
            max_parallel = self._value("max-parallel")
            self.plan = build_plan(
                self.config, [c.id for c in targets], strategy,
                order=self._value("order") if strategy == "serial" else (),
                max_parallel=int(max_parallel) if max_parallel and strategy != "serial" else None,
                max_failures=(self._value("max-failures") or None) if strategy != "serial" else None)
            if not self.tag:
                raise UserError("tag: type the image tag to release")
            validate_tag(self.tag)
        except (UserError, ValueError) as exc:
            self._show_problem(str(exc))
            self._fill_plan()
            return
        self._show_problem(None)
        self._fill_plan()

    def _show_problem(self, problem: str | None) -> None:
        self.problem = problem
        widget = self.query_one("#form-problem", Static)
        if problem:
            widget.update(Text(problem, Palette.of(self.app).bad))
        elif self.plan is not None:
            p = self.plan
            policy = ("stops at the first failure" if p.stop_on_first_failure
                      else f"at most {p.max_parallel} at once, tolerates {p.max_failures} "
                           f"failure{'s' * (p.max_failures != 1)}")
            gates = sum(1 for w in p.waves if w.gate_before)
            widget.update(f"{self.tag} to {len(p.targets)} clusters · {p.strategy} · "
                          f"{len(p.waves)} wave{'s' * (len(p.waves) != 1)}"
                          f"{f' · {gates} gate' + 's' * (gates != 1) if gates else ''}"
                          f" · {policy} · [b]enter[/b] starts")

    def _fill_plan(self) -> None:
        table = self.query_one("#plan", DataTable)
        table.clear()
        if self.plan is None:
            return
        pal = Palette.of(self.app)
        new = self.tag or "?"
        position = 0
        for wave in self.plan.waves:
            for cid in wave.clusters:
                position += 1
                row = self.state.clusters[cid]
                name = Text(cid)
                if row.info.production:
                    name.append(f" {PRODUCTION_GLYPH}", pal.production)
                current = row.live or "-"
                change = Text(f"{current} → {new}")
                if current == new:
                    change.append("  (no change)", "dim")
                table.add_row(str(position), name, str(wave.index + 1),
                              "gate" if wave.gate_before and cid == wave.clusters[0] else "",
                              change)

    # -- starting ---------------------------------------------------------------------

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        """Start the release the plan shows (refused while the form has a problem)."""
        from console.engine import ReleaseRequest

        if self.started:
            return
        self._replan()
        if self.plan is None or self.problem:
            self.notify(self.problem or "nothing to release", severity="error")
            return
        override = self._override_reason()
        if override is False:
            return
        strategy = self.plan.strategy
        max_parallel = self._value("max-parallel")
        request = ReleaseRequest(
            tag=self.tag, clusters=self._value("targets"), strategy=strategy,
            order=tuple(c.strip() for c in self._value("order").split(",") if c.strip())
            if strategy == "serial" else (),
            max_parallel=int(max_parallel) if max_parallel and strategy != "serial" else None,
            max_failures=(self._value("max-failures") or None) if strategy != "serial" else None,
            operator=self.app.operator, override_freeze=override or None)
        if self.busy:
            return
        self.query_one(BuildPane).hide()
        self.build_offer = None
        if self.config.app.build_command:
            self.busy = True
            self._set_editable(False)
            self._check_image(request)   # the registry is I/O: a worker
            return
        self._launch(request)

    def _override_reason(self) -> str | bool | None:
        """The freeze override's reason (None: no override asked); False when the
        override is asked without a reason (refused, told)."""
        if not self.config.freeze or not self.query_one("#override-freeze", Checkbox).value:
            return None
        reason = self._value("override-reason")
        if not reason:
            self.notify("overriding a freeze window needs a reason", severity="error")
            self.query_one("#override-reason", Input).focus()
            return False
        return reason

    # -- the build offer ----------------------------------------------------------------

    @work(thread=True, exit_on_error=False, group="build")
    def _check_image(self, request: ReleaseRequest) -> None:
        from console.registry import image_exists
        from console.version_tag import build_offer

        app = self.config.app
        try:
            offer = build_offer(self.config, request.tag,
                                image_exists(app.image, request.tag, app.registry))
        except Exception:  # noqa: BLE001 - no offer then; pre-flight's image check decides
            offer = None
        self.app.call_from_thread(self._image_checked, request, offer)

    def _image_checked(self, request: ReleaseRequest, offer: BuildOffer | None) -> None:
        self.busy = False
        if offer is None:
            self._launch(request)
            return
        self._set_editable(True)   # the tag may be changed instead of building
        self.build_offer = (request, offer)
        self.query_one(BuildPane).offer(offer.reason, offer.command)

    @on(Button.Pressed, "#build-run")
    def _build_pressed(self) -> None:
        if self.build_offer is None or self.busy:
            return
        request, offer = self.build_offer
        self.build_offer, self.busy = None, True
        self._set_editable(False)
        self.query_one(BuildPane).started(offer.command)
        self._build(request, offer)

    @work(thread=True, exit_on_error=False, group="build")
    def _build(self, request: ReleaseRequest, offer: BuildOffer) -> None:
        from console.registry import image_exists
        from console.version_tag import run_build

        pane = self.query_one(BuildPane)
        result = run_build(offer, on_line=lambda line: self.app.call_from_thread(pane.line,
                                                                                 line))
        ok, detail = result.ok, result.detail
        if ok:
            # The release starts only once the registry really has the image.
            app = self.config.app
            check = image_exists(app.image, request.tag, app.registry)
            ok = check.ok
            detail = f"{offer.image} is in the registry" if ok else \
                f"the build ended, but {check.detail}"
        self.app.call_from_thread(self._built, request, ok, detail, result.output_tail)

    def _built(self, request: ReleaseRequest, ok: bool, detail: str, tail: str) -> None:
        self.busy = False
        self.query_one(BuildPane).finished(ok, detail, "" if ok else tail)
        if ok:
            self._launch(request)
        else:
            self._set_editable(True)

    # -- the release --------------------------------------------------------------------

    def _launch(self, request: ReleaseRequest) -> None:
        """Ask the app to start the release; it calls `release_started` (or says why not)."""
        self._set_editable(True)   # locked again by `release_started`
        self.post_message(StartReleaseRequested(request))

    def release_started(self) -> None:
        """The app started the release: show pre-flight as it runs, lock the form."""
        self.started = True
        self.following = True
        self.release_id = None
        self.query_one("#preflight", RichLog).clear()
        self.query_one("#preflight-box").add_class("shown")
        self._set_editable(False)
        self.query_one("#preflight", RichLog).write("pre-flight: checking every target…")

    def _set_editable(self, editable: bool) -> None:
        for widget in self.query("Input, RadioSet, #start"):
            widget.disabled = not editable

    def _on_events(self, events: list[Event]) -> None:
        """Pre-flight results as they arrive; close when it passes."""
        if not self.following:
            return
        log = self.query_one("#preflight", RichLog)
        pal = Palette.of(self.app)
        for event in events:
            if event.kind is Kind.RELEASE_PLANNED and self.release_id is None:
                self.release_id = event.release_id
            if event.release_id != self.release_id:
                continue
            if event.kind is Kind.PREFLIGHT_RESULT:
                ok = bool(event.data.get("ok"))
                detail = " ".join(str(event.data.get("detail") or event.message).split())
                log.write(Text.assemble(("✔ " if ok else "✘ ", pal.phases[Phase.HEALTHY] if ok else pal.bad),
                                        (f"{event.cluster or 'release':<16} ", "bold"),
                                        f"{event.data.get('check', '')}: {detail}"))
            elif event.kind is Kind.PREFLIGHT_FINISHED:
                if event.data.get("ok"):
                    self.notify(f"{self.release_id}: pre-flight passed, release started")
                    self.dismiss()
                    return
                log.write(Text(f"pre-flight failed ({event.data.get('failures', '?')} "
                               "problems): nothing was touched. Fix and start again.",
                               pal.bad))
            elif event.kind is Kind.RELEASE_FINISHED:
                self.following = False
                self.release_ended()

    def release_ended(self) -> None:
        """The release ended before pre-flight passed (or failed to start): edit again."""
        if self.started and self.is_attached:
            self.started = False
            self._set_editable(True)

    def action_back(self) -> None:
        """Back to the fleet (while pre-flight runs, the release keeps going; a build
        running keeps the form open: its outcome decides whether anything starts)."""
        if self.query_one(BuildPane).running:
            self.notify("the build is running: its result decides the release",
                        severity="warning")
            return
        self.dismiss()
