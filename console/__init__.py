"""release-console: ship one application version to a fleet of Kubernetes clusters.

Layers (see README): config -> plan -> engine -> kube driver, with events flowing back
to the TUI (`console.ui`), the headless CLI (`console.cli`), the history ledger and
the notifiers. Nothing outside `console.ui` imports Textual.
"""

__version__ = "0.1.0"
