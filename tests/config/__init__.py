"""Tests of console.config: the fleet file's reader, model and checks."""
