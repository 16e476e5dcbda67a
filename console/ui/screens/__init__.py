"""The console's screens: fleet (home), release form, gate, rollback, detail, history, help,
follow (`f`: a release another process runs), jump (`:` to a screen or cluster), confirm
(a yes/no modal), and `reading` (a screen's reads off the UI thread: the value or why
it could not be read)."""
