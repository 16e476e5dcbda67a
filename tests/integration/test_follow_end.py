"""`release-console follow` and a release that ends between its ledger sync and its lease
reads: the release's end reached the ledger remote before its leases were given back
(waves.py: the end is recorded and pushed, then the lock is released), so a follower that
synced just before the end and read the leases just after sees a recorded release with no
end and no lease. That is not "its console stopped without recording an end" (exit 1):
the follower syncs again before it says so.

The timing is forced: cluster a answers every request 8 s late (the simulator counts a
request when it arrives, before the delay), and the other console ends the release and
pushes its end as soon as the follower's first Lease read reached a - after its sync,
before its reads answer (8 s: room for that push on a loaded machine). Without a second sync the follower exits 1 every time (the final
run of 17d65fd saw it once, in tests/integration/test_shards.py, under load)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from console.history import Ledger
from tests.integration.conftest import wait_for
from tests.integration.test_shards import bare

RID = "r-ends-meanwhile"


def test_follow_syncs_again_before_it_calls_a_release_unended(world, tmp_path: Path) -> None:
    w = world(["a", "b"])
    remote = bare(tmp_path)
    doc = yaml.safe_load(w.config_path.read_text())
    app = doc["app"]["name"]
    runner = Ledger(tmp_path / "ledger-runner", app, remote=str(remote))
    runner.start_release("r-earlier", version="v1", targets=["a", "b"], operator="ci")
    runner.finish_release("r-earlier", "ok", exit_code=0)   # pushes: the remote has a head

    # The follower's clone exists before the release starts, so its sync merges the start.
    follower_path = tmp_path / "ledger-follower"
    Ledger(follower_path, app, remote=str(remote)).close()
    runner.start_release(RID, version="v2", targets=["a", "b"], operator="ci")
    assert runner.push().ok
    runner.close()

    doc["app"]["history"] = {"path": str(follower_path), "remote": str(remote)}
    config = w.config_path.parent / "clusters-follower.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    w.fleet.set_faults("a", latency=8.0)
    before = leases_asked(w)
    follow = subprocess.Popen([sys.executable, "-m", "console", "follow", RID, "--json",
                               "--config", str(config)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=tmp_path, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: leases_asked(w) > before, timeout=60,
                 what="the follower's first Lease read")
        runner = Ledger(tmp_path / "ledger-runner", app, remote=str(remote))
        assert runner.finish_release(RID, "ok", exit_code=0).ok
        runner.close()
        out, err = follow.communicate(timeout=120)
    finally:
        follow.kill()
    done = subprocess.CompletedProcess(follow.args, follow.returncode, out, err)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line]
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert lines[-1] == {"release": RID, "outcome": "ok"}


def leases_asked(w) -> int:
    """Lease requests cluster a has received (counted on arrival, before its latency)."""
    return int(w.fleet.counters("a")["by_resource"].get("leases", 0))
