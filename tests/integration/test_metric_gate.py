"""Metric health gates (issue 14, item 2): during a bake the fleet file's `health:` checks
are asked of a real Prometheus (Debian's `prometheus`) that scrapes the simulator's
per-cluster app metrics. A tag whose pods answer 5xx (`bad_metrics`) is healthy to
Kubernetes and fails on its error rate: exit 1, the cluster rolled back, the message
naming the query and the value. An unreachable Prometheus is a failed check."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from console.cli import main
from console.engine import ReleaseRequest
from console.events import Kind
from tests.engine.conftest import World
from tests.servers import die_with_parent, free_port, stop_server, wait_until_up

ERROR_RATE = ('sum(rate(http_requests_total{cluster="${cluster}",code=~"5.."}[10s])) / '
              'sum(rate(http_requests_total{cluster="${cluster}"}[10s]))')
CANARY = {"canary": {"waves": [["c1"], ["c2"]], "gates": True, "bake": "40s"}}


def with_health(w: World, url: str, name: str = "error-rate", query: str = ERROR_RATE) -> World:
    """The world with a `health:` section asking `url` one check, `name`: `query` <= 0.01."""
    return w.edited(lambda doc: doc.update(health={
        "prometheus": {"url": url, "timeout": "2s"}, "interval": "1s",
        "checks": [{"name": name, "query": query, "max": 0.01}]}))


def released_and_rolled_back(w: World, **request: object) -> str:
    """Release v2 to c1 (running v1): it must fail and be rolled back to v1; the error of
    its `cluster_failed` event."""
    result = w.release(ReleaseRequest(tag="v2", strategy="parallel", **request))
    assert result.exit_code == 1, result
    assert (result.clusters[0].outcome.value, result.clusters[0].rolled_back_to) == \
        ("rolled_back", "v1")
    return next(e for e in w.recorder.of(Kind.CLUSTER_FAILED) if e.cluster == "c1").data["error"]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[callable]:
    """Factory: a real Prometheus on 127.0.0.1 scraping the given sim fleet every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: make system-deps (apt-get install prometheus)")
    started: list[subprocess.Popen] = []

    def start(fleet) -> str:
        work = tmp_path / "prometheus"
        work.mkdir()
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                             "evaluation_interval": "1s"},
                  "scrape_configs": [{
                      "job_name": "fleet", "scheme": "https",
                      "metrics_path": "/_sim/app-metrics",
                      "tls_config": {"ca_file": str(fleet.ca_file)},
                      "static_configs": [{"targets": [f"127.0.0.1:{fleet.port(c)}"
                                                      for c in fleet.ids]}]}]}
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = (work / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [binary, f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work,
            preexec_fn=die_with_parent)
        log.close()
        started.append(process)
        url = f"http://127.0.0.1:{port}"

        wait_until_up("prometheus", process, work / "prometheus.log",
                      lambda: httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200,
                      lambda: stop_server(process, 20.0), 30.0)
        return url

    yield start
    for process in started:
        stop_server(process, 20.0)


def test_a_tag_bad_by_metrics_fails_the_wave_on_its_error_rate(world, prometheus, capsys):
    w = world(["c1", "c2"], strategies=CANARY, seed=61, bad_metrics=["*slow*"])
    w.deploy_everywhere("v1")
    w = with_health(w, prometheus(w.fleet))
    capsys.readouterr()
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v2-slow",
                 "--strategy", "canary", "--yes", "--json"])
    events = [yaml.safe_load(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    healthy = [e for e in events if e["kind"] == "cluster_healthy"]
    failed = [e for e in events if e["kind"] == "cluster_failed"]
    # Kubernetes said healthy; the error rate said no - naming the query and the value.
    assert [e["cluster"] for e in healthy] == ["c1"] and [e["cluster"] for e in failed] == ["c1"]
    error = failed[0]["error"]
    query = ERROR_RATE.replace("${cluster}", "c1")
    assert error.startswith(f"failed during the bake: metric check error-rate: {query} = ")
    assert error.endswith(", above max 0.01")
    value = float(error.split(" = ")[1].split(",")[0])
    assert value > 0.01
    # The failed canary is rolled back; the next wave is never started.
    rolled = [e for e in events if e["kind"] == "cluster_rolled_back"]
    assert [(e["cluster"], e["ok"], e["version"]) for e in rolled] == [("c1", True, "v1")]
    assert [e["cluster"] for e in events if e["kind"] == "cluster_skipped"] == ["c2"]
    assert not [e for e in events if e["kind"] == "cluster_started" and e["cluster"] == "c2"]
    assert not [e for e in events if e["kind"] == "gate_waiting"]
    assert (w.version("c1"), w.version("c2")) == ("v1", "v1")


def test_an_unreachable_prometheus_is_a_failed_check_never_a_pass(world):
    w = world(["c1"], seed=62)
    w.deploy_everywhere("v1")
    w = with_health(w, f"http://127.0.0.1:{free_port()}")
    error = released_and_rolled_back(w, bake=5.0)
    assert "could not be evaluated" in error and "unreachable" in error


NO_SERIES = 'sum(rate(http_requests_totl{cluster="${cluster}"}[10s]))'   # misspelt metric


def test_a_check_without_any_data_during_the_bake_fails_it_naming_the_query(world, prometheus):
    w = world(["c1"], seed=63)
    w.deploy_everywhere("v1")
    w = with_health(w, prometheus(w.fleet), "typo-rate", NO_SERIES)
    error = released_and_rolled_back(w, bake=3.0)
    assert "metric check typo-rate: no data during the bake" in error
    assert 'http_requests_totl{cluster="c1"}' in error


def test_health_checks_are_not_skipped_when_the_strategy_has_no_bake(world, prometheus):
    # No `bake:` anywhere: the checks still get their minimum evaluation window (one
    # interval), and a check without data fails the wave instead of passing silently.
    w = world(["c1"], seed=64)
    w.deploy_everywhere("v1")
    w = with_health(w, prometheus(w.fleet), "typo-rate", NO_SERIES)
    released_and_rolled_back(w)
    baking = w.recorder.of(Kind.WAVE_BAKING)
    assert baking and baking[0].data["seconds"] == 1.0


def test_the_gate_tells_the_bake_a_wave_really_had_without_a_bake_setting(world, prometheus):
    # No `bake:`: with checks every wave bakes one `interval` (1 s) - the gate's "baked"
    # said 0 (the plan's bake) for it.
    from console.engine import GateAnswer, GateDecision
    w = world(["c1", "c2"], seed=65,
              strategies={"canary": {"waves": [["c1"], ["c2"]], "gates": True}})
    w.deploy_everywhere("v1")
    w = with_health(w, prometheus(w.fleet), "always-fine", "vector(0)")
    asked: list[float] = []

    def approver(request) -> GateAnswer:
        asked.append(request.baked)
        return GateAnswer(GateDecision.APPROVE, by="test")

    result = w.release(ReleaseRequest(tag="v2", strategy="canary"), approver)
    assert result.exit_code == 0, result
    assert asked == [1.0]
