"""Tests of console.locks: the per-cluster Leases and the release lock, alone and under the real engine."""
