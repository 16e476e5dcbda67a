"""The shard board's cluster (`deploy --shard K/N`, 3 real processes against one simulated
fleet and one bare Git ledger remote): every shard checks its rights there before
anything is touched, and shards given different `--shard-board`s find each other on the
default board instead of waiting out `--shard-timeout` - and leave no board behind."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from tests.integration.test_shards import IDS, STRATEGIES, Shard, bare, board_of, \
    run_shards, shard_configs

# Get, update, list and watch Leases - no create.
NO_CREATE = [{"verbs": ["get", "update", "list", "watch"],
              "apiGroups": ["coordination.k8s.io"], "resources": ["leases"]}]


def limit_credentials(w, config: Path, cid: str, rules: list[dict]) -> None:
    """Give the fleet file `config` a token for `cid` limited to `rules`."""
    doc = yaml.safe_load(config.read_text())
    entry = next(c for c in doc["clusters"] if c["id"] == cid)
    kubeconfig = w.fleet.kubeconfig(cid, w.fleet.add_token(cid, rules, "shard-2"))
    path = config.parent / f"{cid}-limited.yaml"
    path.write_text(yaml.safe_dump(kubeconfig))
    entry["credentials"]["kubeconfig"] = path.name
    config.write_text(yaml.safe_dump(doc, sort_keys=False))


def told(w, shards: list[Shard], started: float, boards: tuple[str, ...]) -> str:
    """What a failing split story shows: each shard's exit, its events (seconds after
    the start, wall clock), the end of its stderr, and what each board holds."""
    wall = time.time() - (time.monotonic() - started)
    lines: list[Any] = []
    for s in shards:
        lines.append(f"--- shard {s.k}/3 exit {s.proc.returncode}")
        for e in list(s.events):
            said = next((str(e[k]) for k in ("detail", "reason", "error", "message")
                         if e.get(k)), "")[:200]
            lines.append(f"  +{e['ts'] - wall:6.1f}s {e['kind']} {said}")
        lines.append("  stderr: " + s.err[-3000:].replace("\n", "\n  "))
    for c in boards:
        try:
            lines.append(f"--- board on {c}: {board_of(w, c)}")
        except Exception as exc:   # (the story's own outcome matters more)
            lines.append(f"--- board on {c}: not read: {exc}")
    return "\n".join(lines)


def test_every_shard_checks_its_rights_on_the_board_before_anything(world, tmp_path):
    # The board lease is there already (an earlier release made it): shard 2, whose
    # credentials for c0 (the board; shard 1's cluster) may get and update Leases but
    # not create them, would get through whenever another shard wrote first - and fail
    # whenever it came first. Refused, naming the cluster and the right, every time.
    w = world(IDS, strategies=STRATEGIES, readiness_delay=0.2, jitter=0.0, seed=29)
    remote = bare(tmp_path)
    configs = shard_configs(w.config_path, remote, tmp_path)
    assert [s.finish() for s in run_shards(configs, tmp_path, "r-rights-1")] == [0, 0, 0]
    limit_credentials(w, configs[1], "c0", NO_CREATE)
    shards = run_shards(configs, tmp_path, "r-rights-2", "--tag", "v3",
                        "--shard-timeout", "20")
    codes = [s.finish() for s in shards]
    assert codes == [2, 2, 2], [(s.k, s.err[-2000:]) for s in shards]
    assert "shard 2/3 may not use the shard board on cluster 'c0': its credentials there " \
           "lack create leases.coordination.k8s.io in namespace" in shards[1].err, \
        shards[1].err
    assert not [e for s in shards for e in s.kinds("cluster_started")]
    assert [w.version(c) for c in IDS] == ["v2"] * 9


def test_shards_given_different_boards_find_each_other(world, tmp_path):
    # Shards 1 and 2 are given --shard-board c4, shard 3 none (so c0, the first target):
    # they never meet on one board. Shards 1 and 2 look for the silent shard on the
    # default board, find it there, and stop all three well before --shard-timeout.
    w = world(IDS, strategies=STRATEGIES, readiness_delay=0.2, jitter=0.0, seed=31)
    remote = bare(tmp_path)
    configs = shard_configs(w.config_path, remote, tmp_path)
    started = time.monotonic()
    shards = run_shards(configs[:2], tmp_path, "r-boards", "--shard-board", "c4",
                        "--shard-timeout", "90")
    shards.append(Shard(configs[2], tmp_path, 3, "--tag", "v2", "--strategy", "three",
                        "--release-id", "r-boards", "--shard-timeout", "90"))
    codes = [s.finish() for s in shards]
    took = time.monotonic() - started
    story = told(w, shards, started, ("c0", "c4"))
    assert codes == [2, 2, 2], story
    assert took < 90, (took, story)
    for s in shards:
        end = s.kinds("release_finished")[-1]["detail"]
        assert "shards report on different shard boards: " in end, story
        assert "3/3 on cluster 'c0' (no --shard-board)" in end, story
        assert "on cluster 'c4' (--shard-board c4)" in end, story
        assert "every shard must be given the same --shard-board" in end, story
    assert not [e for s in shards for e in s.kinds("cluster_started")]
    # Neither board is left behind (before: each stayed until 8 newer releases).
    assert [board_of(w, c).get("r-boards") for c in ("c0", "c4")] == [None, None], story


def test_shards_given_two_named_boards_find_each_other(world, tmp_path):
    # Shards 1 and 2 are given --shard-board c4, shard 3 --shard-board c5: neither is the
    # default board (c0). Each records its board on c0; the split is found there within
    # a heartbeat, every shard stops (exit 2, nothing touched) naming both boards, and
    # no board is left behind. Before, only --shard-timeout ended it ("stopped
    # reporting"), and both boards stayed.
    w = world(IDS, strategies=STRATEGIES, readiness_delay=0.2, jitter=0.0, seed=37)
    remote = bare(tmp_path)
    configs = shard_configs(w.config_path, remote, tmp_path)
    versions = [w.version(c) for c in IDS]
    started = time.monotonic()
    shards = run_shards(configs[:2], tmp_path, "r-two", "--shard-board", "c4",
                        "--shard-timeout", "90")
    shards.append(Shard(configs[2], tmp_path, 3, "--tag", "v2", "--strategy", "three",
                        "--release-id", "r-two", "--shard-timeout", "90",
                        "--shard-board", "c5"))
    codes = [s.finish() for s in shards]
    took = time.monotonic() - started
    story = told(w, shards, started, ("c0", "c4", "c5"))
    assert codes == [2, 2, 2], story
    for s in shards:
        end = s.kinds("release_finished")[-1]["detail"]
        assert "shards report on different shard boards: " in end, story
        assert "on cluster 'c4' (--shard-board c4)" in end, story
        assert "3/3 on cluster 'c5' (--shard-board c5)" in end, story
        assert end.endswith("every shard must be given the same --shard-board; "
                            "nothing was touched"), story
    assert took < 90, (took, story)
    assert not [e for s in shards for e in s.kinds("cluster_started")]
    assert [w.version(c) for c in IDS] == versions
    assert [board_of(w, c).get("r-two") for c in ("c0", "c4", "c5")] == [None] * 3, story
