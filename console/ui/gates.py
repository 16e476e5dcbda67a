"""The TUI's gates: the question the engine asks between waves, answered in a modal
screen (`GateScreen`), and the gate shown early while the wave before it bakes.

During a bake the gate counts down: approve waits for the engine's question (it comes
once the bake is over), stop and abort act at once - an abort through the release's
control, a stop kept and given as the answer the moment the engine asks. Over another
screen (the detail view) the early gate waits until the operator is back on the fleet
screen. A console closing at a gate stops there (`_gate_on_close`).

`GateActions` is a base class of `ReleaseConsoleApp` (after `App` in its bases): it uses
the app's view model, release control and operator, and Textual's `notify`,
`push_screen` and `screen_stack`. Textual finds `on_gate_question` by its name through
the app's bases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from console.engine import GateAnswer, GateRequest
    from console.engine.remote import RemoteControl
    from console.ui.bridge import GateQuestion
    from console.ui.state import FleetState


class GateActions:
    """Gates as the app shows and answers them (see the module doc)."""

    state: FleetState
    operator: str
    control: RemoteControl | None
    notify: Callable[..., Any]
    push_screen: Callable[..., Any]
    screen_stack: list[Any]
    # A baking wave whose gate waits to be shown until the operator is back on the
    # fleet screen (they were in the detail view when the bake began).
    _gate_deferred: int | None
    # Gates stopped (`s`) while their wave baked: finished wave -> the answer given
    # the moment the engine asks (once the bake is over).
    _stopped_ahead: dict[int, GateAnswer]

    def _gate_ahead(self, wave: int) -> None:
        """A wave with a gate after it bakes: show that gate now, counting the bake down
        (approve waits for the engine's question, which comes once the bake is over;
        stop and abort act at once). Over another screen (the detail view) it waits
        until the operator is back on the fleet screen: nothing to decide yet is no
        reason to pull them out."""
        from console.ui.screens.gate import GateScreen

        release = self.state.release
        if release is None or not release.gate_after(wave) or \
                any(isinstance(s, GateScreen) for s in self.screen_stack):
            return
        if len(self.screen_stack) > 1:
            self._gate_deferred = wave
            return
        screen = GateScreen.ahead(wave, self.state, self.operator)
        self.push_screen(screen, callback=lambda answer: self._decided_ahead(screen, answer))

    def _show_deferred_gate(self) -> None:
        """Back on the fleet screen while the wave still bakes: its gate now."""
        wave, self._gate_deferred = self._gate_deferred, None
        release = self.state.release
        if wave is not None and release is not None and release.outcome is None \
                and release.bake_wave == wave:
            self._gate_ahead(wave)

    def _decided_ahead(self, screen: Any, answer: GateAnswer | None) -> None:
        """The gate shown during the bake closed: hidden (None), decided after the engine
        asked (it took the answer already), or stopped / aborted while baking."""
        from console.engine import GateDecision

        if answer is None or screen.request is not None:
            return
        decision = GateDecision(answer.decision)
        if decision is GateDecision.ABORT:
            # The engine ends the bake on an abort and rolls back what was reached.
            if self.control is not None:
                self.control.abort(rollback=answer.rollback, by=self.operator)
            self.notify("release aborted: rolling back what it reached")
        elif decision is GateDecision.REJECT:
            self._stopped_ahead[screen.finished_wave] = answer
            self.notify(f"stopped: no wave starts after wave {screen.finished_wave + 1} "
                        "(its bake goes on; a cluster that degrades is still rolled back)")

    def on_gate_question(self, message: GateQuestion) -> None:
        """The engine asks at a gate: the gate shown during the bake takes the question,
        a stop given then answers it, else a new gate screen asks."""
        from console.ui.screens.gate import GateScreen

        self._gate_deferred = None
        stopped = self._stopped_ahead.pop(message.request.finished_wave, None)
        if stopped is not None:     # stopped while the wave baked: that is the answer
            message.answer(stopped)
            return
        for screen in self.screen_stack:
            # The gate shown while its wave baked takes the question.
            if isinstance(screen, GateScreen) and screen.request is None:
                if screen.finished_wave == message.request.finished_wave:
                    screen.open(message.request, message.answer)
                    return
        self.push_screen(GateScreen(message.request, self.state, self.operator),
                         callback=message.answer)

    def _gate_on_close(self, request: GateRequest) -> GateAnswer:
        """The console is closing at a gate: stop there, touch nothing more."""
        from console.engine import GateAnswer, GateDecision

        return GateAnswer(GateDecision.REJECT, rollback=False, by=self.operator)
