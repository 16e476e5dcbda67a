"""The Textual console: the fleet grid, the release form, gates, rollback, history.

Everything here drives `console.engine` from worker threads and learns what happens from
its events; nothing here talks to Kubernetes. `state` is the view model (no Textual),
`app` the application (`gates`, `rollbacks` and `steering` its gate, rollback and
steering actions, `loading` its read of the fleet file after the first frame; `messages`
what screens ask of it), `screens/` and `widgets/` its
parts, `themes` the theme loader.
"""
