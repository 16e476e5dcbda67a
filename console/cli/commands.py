"""The sub-commands in the order `release-console --help` lists them: each one's name,
the line that list shows, and the description its own `--help` opens with.

Every name is a module `console.cli.NAME_cmd` with `add_arguments(parser, common)` (its
own arguments; `common` for a command with actions of its own, as `lab up`) and
`run(args)` (the command; returns the exit code). The help texts stand here together, so
the command line reads at a glance, and one loop (`console.cli.build_parser`) sets every
command up the same way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """A sub-command: `name`, its line in the command list, its `--help` description."""

    name: str
    help: str
    description: str | None = None


COMMANDS = (
    Command("ui", "the release console (default without a command)",
            "The terminal console: live fleet grid, releases, gates, rollback."),
    Command("deploy", "release a version to the fleet (headless)",
            "Release one image tag to the selected clusters. Exit codes: 0 all healthy, 1 "
            "failed (failed clusters rolled back), 2 bad input or pre-flight failure "
            "(nothing touched), 3 stopped at a gate."),
    Command("control", "steer a running release (pause, approve, skip...)",
            "Ask a running release (a headless deploy, here or in CI) to pause, resume, "
            "abort, approve or reject its gate, skip a cluster not yet started or retry a "
            "failed one. Only someone the cluster confirms (SelfSubjectReview) with the "
            "app's rights (update on its Lease) on every cluster the release targets may "
            "steer it: each action decides for all its clusters still to come, so rights "
            "on one cluster never steer the others. With a target unreachable, pause, "
            "abort and reject (they only reduce what the release does) are taken on the "
            "reachable ones; approve, skip, retry and resume are refused. Exit codes: 0 "
            "acknowledged, 2 no such running release, nothing to act on or refused, 1 no "
            "answer in time."),
    Command("follow", "watch a release another process runs (CI, another console)",
            "Print the per-cluster phase and progress of a running release, its gates and "
            "its end, read from the ledger, the Leases and the clusters. Exit codes: 0 "
            "followed to the end, 1 its console stopped without recording an end, 2 no "
            "such release."),
    Command("plan", "print what a release would do (nothing touched)"),
    Command("check", "run the pre-flight checks of a release"),
    Command("status", "version matrix: live vs. recorded per cluster",
            "The app's version on every cluster, live and as the ledger recorded it. Exit "
            "codes: 0 every cluster read, 4 some cluster could not be read (the others are "
            "still shown), 2 bad input."),
    Command("rollback", "roll back one cluster or a whole release"),
    Command("history", "the release ledger: who released what, where, when"),
    Command("rbac", "print the least-privilege RBAC manifests for one cluster"),
    Command("drill", "rehearse a release and its rollback on a local fleet",
            "Rehearse a release and its rollback on a local fleet built from the fleet "
            "file; report detection and rollback times per cluster. Exit codes: 0 every "
            "rollback within app.rollout_timeout, 1 not, 2 bad input."),
    Command("sim", "serve the local fleet of simulated clusters",
            "Serve simulated Kubernetes clusters (one HTTPS port each) and a demo "
            "registry."),
    Command("lab", "serve real Kubernetes control planes on this machine",
            "Real control planes (etcd, kube-apiserver, kube-controller-manager, "
            "kube-scheduler, KWOK) built by `make bin`."),
    Command("demo", "the console on the embedded local fleet simulator",
            "Serve every cluster of the fleet file from the local simulator and open the "
            "console on it."),
)
