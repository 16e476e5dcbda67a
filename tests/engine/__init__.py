"""Tests of console.engine: releases, gates, pre-flight, rollbacks, the engine process."""
