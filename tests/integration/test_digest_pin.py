"""The same bits in every wave (issue 14, item 3): the tag is resolved to its digest when
the release is planned and every cluster runs `REPO:TAG@sha256:...`; the tag re-pushed
to other bits at the gate between two waves changes nothing for the second wave. The
ledger, `--json` and `status` carry the digest, `status` shows digest drift, and a
rollback goes back to the digest the ledger recorded, not to what the tag names now.
A real docker-registry holds the image; the clusters are simulated; kubectl makes the
hand-made change."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


from console.cli import main
from console.engine import GateAnswer, GateDecision, ReleaseRequest
from console.events import Kind
from console.history import Ledger
from tests.engine.conftest import World
from tests.integration.test_status_matrix import KUBECTL

CANARY = {"canary": {"waves": [["c1"], ["c2"]], "gates": True}}
REPO_NAME = "apps/pinned"


def on_registry(w: World, host: str) -> World:
    """The world with its app image on the real registry."""
    return w.edited(lambda doc: doc["app"].update(image=f"{host}/{REPO_NAME}", registry={}))


def set_image_by_hand(w: World, tmp_path: Path, image: str) -> None:
    """`kubectl set image` of the app on c1, as someone outside the console would."""
    done = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(w.config_path.parent / "c1.yaml"), "--cache-dir",
         str(tmp_path / "kubectl-cache"), "--request-timeout", "30s", "-n", "c1", "set",
         "image", "deployment/user-service", f"user-service={image}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr


def test_a_tag_re_pushed_between_waves_changes_nothing(world, registry, capsys, tmp_path):
    w = on_registry(world(["c1", "c2"], strategies=CANARY, seed=3), registry.host)
    config = str(w.config_path)
    registry.push_image(REPO_NAME, "v0")
    first = registry.push_image(REPO_NAME, "v1")
    registry.push_image(REPO_NAME, "v2")
    image = f"{registry.host}/{REPO_NAME}"
    assert main(["deploy", "--config", config, "--tag", "v0", "--strategy", "parallel"]) == 0

    moved: dict[str, str] = {}

    def approver(_request: object) -> GateAnswer:
        # The pause between the waves: someone pushes other bits under the same tag.
        moved["digest"] = registry.push_image(REPO_NAME, "v1")
        return GateAnswer(GateDecision.APPROVE, by="test")

    result = w.release(ReleaseRequest(tag="v1", strategy="canary"), approver, session=True)
    assert result.exit_code == 0, (result.message, result.clusters)
    assert moved["digest"] != first
    # Both waves run the bits the first one was judged on.
    assert w.image("c1") == w.image("c2") == f"{image}:v1@{first}"
    assert [c.digest for c in result.clusters] == [first, first]
    planned = w.recorder.of(Kind.RELEASE_PLANNED)[-1]
    assert planned.data["digest"] == first and planned.data["image"] == f"{image}:v1@{first}"
    assert {e.cluster: e.data["digest"] for e in w.recorder.of(Kind.CLUSTER_STARTED)
            if e.release_id == result.release_id} == {"c1": first, "c2": first}
    pin = [e for e in w.recorder.of(Kind.PREFLIGHT_RESULT)
           if e.release_id == result.release_id and e.data["check"] == "pin"]
    assert pin and pin[0].data["ok"] and first in pin[0].data["detail"]

    # The ledger has the digest on the release and on each cluster's outcome.
    ledger = Ledger.for_config(w.config)
    try:
        release = next(r for r in ledger.releases() if r.id == result.release_id)
    finally:
        ledger.close()
    assert release.digest == first
    assert {c.cluster: c.digest for c in release.clusters} == {"c1": first, "c2": first}

    # history --json has it too.
    capsys.readouterr()
    assert main(["history", "--config", config, "--json"]) == 0
    line = next(json.loads(l) for l in capsys.readouterr().out.splitlines()
                if json.loads(l)["id"] == result.release_id)
    assert line["digest"] == first and {c["digest"] for c in line["clusters"]} == {first}

    # status: the running digest, and no drift while the cluster runs what was recorded.
    assert main(["status", "--config", config, "--json"]) == 0
    rows = {c["cluster"]: c for c in json.loads(capsys.readouterr().out)["clusters"]}
    assert [(rows[c]["digest"], rows[c]["recorded_digest"], rows[c]["digest_drift"])
            for c in ("c1", "c2")] == [(first, first, False), (first, first, False)]

    # Someone runs the re-pushed v1 on c1 by hand: the same version, other bits - drift.
    set_image_by_hand(w, tmp_path, f"{image}:v1@{moved['digest']}")
    assert main(["status", "--config", config]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert f" {moved['digest'][:19]} " in lines["c1"] and "DRIFT" in lines["c1"]
    assert f"v1@{first[:19]}" in lines["c1"]   # what the ledger says runs there
    assert "DRIFT" not in lines["c2"]

    # v2 everywhere (--json carries the digest), then c1 rolled back the ledger's way:
    # to v1 - the digest the ledger recorded, although the newest v1 revision there runs
    # the re-pushed bits.
    assert main(["deploy", "--config", config, "--tag", "v2", "--strategy", "canary",
                 "--yes", "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    v2 = registry.pushed[f"{REPO_NAME}:v2"]
    assert {e["cluster"]: e["digest"] for e in events if e["kind"] == "cluster_healthy"} == \
        {"c1": v2, "c2": v2}
    assert main(["rollback", "c1", "--yes", "--config", config]) == 0
    assert "c1: rolled_back v2 -> v1" in capsys.readouterr().out
    assert w.image("c1") == f"{image}:v1@{first}"


def test_no_pin_releases_the_plain_tag(
        world, registry, capsys):
    w = on_registry(world(["c1"], seed=4), registry.host)
    config = str(w.config_path)
    registry.push_image(REPO_NAME, "plain")
    assert main(["deploy", "--config", config, "--tag", "plain", "--no-pin"]) == 0
    assert w.image("c1") == f"{registry.host}/{REPO_NAME}:plain"

    # A registry that does not answer: the image check says so once (the pin lookup is
    # the same HEAD), and nothing is touched (exit 2).
    w.edited(lambda doc: doc["app"].update(image=f"127.0.0.1:1/{REPO_NAME}"))
    capsys.readouterr()
    assert main(["deploy", "--config", config, "--tag", "plain", "--json"]) == 2
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    failed = [e for e in events if e["kind"] == "preflight_result" and not e["ok"]]
    assert [e["check"] for e in failed] == ["image"]
    assert w.image("c1") == f"{registry.host}/{REPO_NAME}:plain"


def test_plan_names_the_digest_and_takes_bake_pace_and_scope(world, registry, capsys):
    w = on_registry(world(["c1", "c2"], strategies=CANARY, seed=5), registry.host)
    digest = registry.push_image(REPO_NAME, "p1")
    capsys.readouterr()
    assert main(["plan", "--config", str(w.config_path), "--tag", "p1", "--strategy",
                 "canary", "--bake", "30s", "--pace", "1/10s", "--on-failure", "wave",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["digest"] == digest
    assert [wave["bake"] for wave in data["waves"]] == [30.0, 30.0]
    assert (data["max_starts"], data["on_failure"]) == ([1, 10.0], "wave")
    assert main(["plan", "--config", str(w.config_path), "--tag", "p1"]) == 0
    assert f"p1 is pinned to {digest}" in capsys.readouterr().out


def test_rollback_release_goes_back_to_the_recorded_digest(world, registry, capsys, tmp_path):
    # `rollback --release R` must take each cluster back to the digest the ledger
    # recorded for its previous version, as `rollback CLUSTER` does - not to the newest
    # revision of that tag, which runs re-pushed bits.
    w = on_registry(world(["c1"], seed=5), registry.host)
    config = str(w.config_path)
    image = f"{registry.host}/{REPO_NAME}"
    first = registry.push_image(REPO_NAME, "v1")
    registry.push_image(REPO_NAME, "v2")
    assert main(["deploy", "--config", config, "--tag", "v1", "--yes"]) == 0
    assert w.image("c1") == f"{image}:v1@{first}"
    moved = registry.push_image(REPO_NAME, "v1")
    assert moved != first
    # Someone runs the re-pushed v1 by hand: the newest v1 revision has other bits.
    set_image_by_hand(w, tmp_path, f"{image}:v1@{moved}")
    capsys.readouterr()
    assert main(["deploy", "--config", config, "--tag", "v2", "--yes", "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rid = events[0]["release"]
    assert main(["rollback", "--release", rid, "--yes", "--config", config]) == 0
    assert "c1: rolled_back v2 -> v1" in capsys.readouterr().out
    assert w.image("c1") == f"{image}:v1@{first}"
