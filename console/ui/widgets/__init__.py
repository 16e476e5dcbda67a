"""The console's widgets: the fleet grid, the release header, the event log, the release
form's build pane (`build_pane`), lists that move the k9s way (`lists`: j/k, g/G) and the
theme's colours (`palette`)."""
