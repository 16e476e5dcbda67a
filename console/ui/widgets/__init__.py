"""The console's widgets: the fleet grid, the release header and the event log."""
