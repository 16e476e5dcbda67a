"""Tests of console.sim: the simulated clusters' API, controllers, faults, clock and seed."""
