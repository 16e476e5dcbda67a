"""The console's screens: fleet (home), release form, gate, rollback, detail, history, help."""
