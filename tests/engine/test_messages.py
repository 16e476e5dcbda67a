"""Messages that say exactly what is wrong: `plan` shows whole errors, `history --cluster`
refuses a cluster no one has heard of (exit 2, as every command does for bad input)."""

from __future__ import annotations

from console.cli import main
from console.sim import ClusterSpec


def test_plan_shows_an_unreachable_clusters_whole_error(world, capsys):
    w = world(["a", ClusterSpec("b", {"unreachable": True})])
    code = main(["plan", "--config", str(w.config_path), "--tag", "v1"])
    out = capsys.readouterr().out
    assert code == 0
    row = next(line for line in out.splitlines() if line.split()[1:2] == ["b"])
    assert row.split()[3:5] == ["?", "[1]"]
    footnote = " ".join(out[out.index("[1] b: "):].split())
    assert footnote == f"[1] b: unreachable ({w.fleet.url('b')}): connection refused"
    assert "..." not in out


def test_history_of_an_unknown_cluster_is_exit_2_naming_the_fleet_file(world, capsys):
    w = world(["a"])
    assert main(["history", "--config", str(w.config_path), "--cluster", "nope"]) == 2
    err = capsys.readouterr().err
    assert f"{w.config.source}: unknown cluster 'nope' (clusters: a)" in err
    assert main(["history", "--config", str(w.config_path), "--cluster", "a"]) == 0
    assert "no releases recorded matching the filters" in capsys.readouterr().out
