"""Integration tests: issues 3-5 as a user tries them, through the real parts wired
together - the engine and CLI on simulated clusters, real Git ledgers, real kubectl, a
real docker-registry: the release lock, the version matrix and drift, rollback to the
last good version, the default tag and build, private credential files, and pre-flight
on a flaky cluster."""
