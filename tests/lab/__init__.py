"""Tests of console.lab: real control planes, and the same stories on the simulator and the lab."""
