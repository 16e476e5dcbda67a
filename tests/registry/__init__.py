"""Tests of console.registry and version tags against a real docker-registry."""
