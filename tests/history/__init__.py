"""Tests of console.history: the Git ledger, its schema and remote, the history command, notifications."""
