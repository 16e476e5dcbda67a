"""Planning is pure: selection and strategies turned into waves, checked exhaustively."""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from console.config import (App, Cluster, Credentials, FleetConfig, HistoryConfig,
                            NotifyConfig, RegistryConfig, Strategy, load)
from console.errors import ValidationError
from console.plan import DEFAULT_MAX_PARALLEL, Plan, build_plan, resolve_waves, select

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo() -> FleetConfig:
    return load(ROOT / "clusters.yaml")


def fleet(clusters: list[tuple[str, tuple[str, ...]]], strategies: dict[str, Strategy] | None = None,
          order: tuple[str, ...] = ()) -> FleetConfig:
    """A FleetConfig built in memory (hypothesis runs many of these)."""
    app = App(name="web", image="r.example.com/web", manifests=Path("/nonexistent"),
              namespace_rule="{cluster}", rollout_timeout=600.0,
              history=HistoryConfig(Path("/nonexistent")), notify=NotifyConfig(),
              registry=RegistryConfig())
    return FleetConfig(
        path=Path("/x/clusters.yaml"), app=app,
        clusters=tuple(Cluster(id=cid, groups=groups, credentials=Credentials(),
                               namespace=cid, values={}, sim={}, line=i + 1,
                               production="prod" in groups)
                       for i, (cid, groups) in enumerate(clusters)),
        strategies=strategies or {}, vault=None, sim={}, raw={}, order=order)


def ids(clusters) -> tuple[str, ...]:
    return tuple(c.id for c in clusters)


# --------------------------------------------------------------------------- select


@pytest.mark.parametrize("selector, expected", [
    ("", ("staging", "prod-eu-10pct", "prod-eu", "prod-us", "prod-ap")),
    ("  ", ("staging", "prod-eu-10pct", "prod-eu", "prod-us", "prod-ap")),
    ("staging", ("staging",)),
    ("prod", ("prod-eu-10pct", "prod-eu", "prod-us", "prod-ap")),
    ("prod-*", ("prod-eu-10pct", "prod-eu", "prod-us", "prod-ap")),
    ("prod-*,!prod-us", ("prod-eu-10pct", "prod-eu", "prod-ap")),
    ("!prod-us", ("staging", "prod-eu-10pct", "prod-eu", "prod-ap")),
    ("eu", ("staging", "prod-eu-10pct", "prod-eu")),
    ("eu,!canary", ("staging", "prod-eu")),
    ("prod-us, staging", ("staging", "prod-us")),  # config order, not selector order
    ("prod-us,prod-us", ("prod-us",)),
    ("staging,prod-eu,prod-us", ("staging", "prod-eu", "prod-us")),  # the seed's default
    ("prod-e?", ("prod-eu",)),
    ("prod-[ue][us]", ("prod-eu", "prod-us")),
    ("prod,", ("prod-eu-10pct", "prod-eu", "prod-us", "prod-ap")),
])
def test_select(demo, selector, expected):
    assert ids(select(demo, selector)) == expected


@pytest.mark.parametrize("selector, message", [
    ("prd", "--clusters: 'prd' matches no cluster id, group or glob (did you mean 'prod'?)"),
    ("staging,prod-uk", "--clusters: 'prod-uk' matches no cluster id, group or glob"),
    ("!nope", "--clusters: 'nope' matches no cluster"),
    ("dev-*", "--clusters: 'dev-*' matches no cluster"),
    ("prod,!prod", "--clusters: 'prod,!prod' selects no cluster"),
    ("!", "--clusters: '!': '!' must be followed by"),
])
def test_select_errors_name_the_term(demo, selector, message):
    with pytest.raises(ValidationError) as info:
        select(demo, selector)
    assert str(info.value).startswith(message)


# --------------------------------------------------------------------------- serial


def test_serial_default_is_config_order(demo):
    plan = build_plan(demo, select(demo, "prod"), "serial")
    assert plan.strategy == "serial"
    assert plan.order == ("prod-eu-10pct", "prod-eu", "prod-us", "prod-ap")
    assert len(plan.waves) == 1 and plan.waves[0].gate_before is False
    assert plan.max_parallel == 1 and plan.stop_on_first_failure
    assert plan.targets == ("prod-eu-10pct", "prod-eu", "prod-us", "prod-ap")


def test_serial_order_then_remaining_targets_in_config_order(demo):
    plan = build_plan(demo, select(demo, ""), "serial", order=("prod-us", "staging"))
    assert plan.order == ("prod-us", "staging", "prod-eu-10pct", "prod-eu", "prod-ap")
    # the CLI may pass the raw comma list
    assert build_plan(demo, select(demo, ""), "serial", order="prod-us, staging").order == plan.order


def test_serial_order_naming_a_non_target_is_refused(demo):
    # As the original pipeline: every cluster of the order must be a target.
    with pytest.raises(ValidationError, match=r"--order: cluster 'prod-us' is not a target"):
        build_plan(demo, select(demo, "staging,prod-eu"), "serial", order=("staging", "prod-us"))


@pytest.mark.parametrize("order, message", [
    (("staging", "prod-uss"), "--order: unknown cluster 'prod-uss' (did you mean 'prod-us'?)"),
    (("staging", "staging"), "--order: cluster 'staging' is listed twice"),
])
def test_serial_order_errors(demo, order, message):
    with pytest.raises(ValidationError) as info:
        build_plan(demo, select(demo, ""), "serial", order=order)
    assert str(info.value).startswith(message)


def test_config_default_order_is_filtered_never_an_error():
    config = fleet([("a", ()), ("b", ()), ("c", ()), ("d", ())], order=("d", "b", "a"))
    assert build_plan(config, ["a", "c", "d"], "serial").order == ("d", "a", "c")
    # --order wins over the config's order
    assert build_plan(config, ["a", "c", "d"], "serial", order=["c"]).order == ("c", "a", "d")


@pytest.mark.parametrize("kwargs, message", [
    ({"max_parallel": 3}, "--max-parallel: the serial strategy runs one cluster"),
    ({"max_failures": "1"}, "--max-failures: the serial strategy stops at the first failure"),
])
def test_serial_refuses_parallel_flags(demo, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        build_plan(demo, ["staging"], "serial", **kwargs)


# --------------------------------------------------------------------------- parallel


def test_parallel_defaults(demo):
    plan = build_plan(demo, select(demo, ""), "parallel")
    assert len(plan.waves) == 1 and plan.waves[0].clusters == demo.ids
    assert plan.max_parallel == DEFAULT_MAX_PARALLEL
    assert plan.max_failures == 0 and plan.failure_budget is None
    assert not plan.stop_on_first_failure


@pytest.mark.parametrize("budget, count", [("2", 2), (3, 3), ("10%", 1), ("25%", 2), ("0%", 0),
                                           ("100%", 10), ("19%", 1)])
def test_parallel_failure_budget(budget, count):
    config = fleet([(f"c{i}", ()) for i in range(10)])
    plan = build_plan(config, config.ids, "parallel", max_parallel=4, max_failures=budget)
    assert plan.max_parallel == 4
    assert plan.max_failures == count


@pytest.mark.parametrize("kwargs, message", [
    ({"max_parallel": 0}, "--max-parallel: expected a whole number >= 1, got 0"),
    ({"max_parallel": True}, "--max-parallel: expected a whole number >= 1"),
    ({"max_failures": "x"}, "--max-failures: expected a number of clusters or a percentage"),
    ({"max_failures": "-1"}, "--max-failures:"),
    ({"max_failures": "150%"}, "--max-failures:"),
    ({"order": ("staging",)}, "--order: applies to the serial strategy only"),
])
def test_parallel_flag_errors(demo, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        build_plan(demo, demo.ids, "parallel", **kwargs)


# --------------------------------------------------------------------------- named strategies


def test_demo_canary(demo):
    plan = build_plan(demo, select(demo, ""), "canary")
    assert [w.clusters for w in plan.waves] == [
        ("staging",), ("prod-eu-10pct",), ("prod-eu", "prod-us", "prod-ap")]
    assert [w.gate_before for w in plan.waves] == [False, True, True]
    assert [w.index for w in plan.waves] == [0, 1, 2]
    assert plan.wave_of("prod-us") == 2
    assert plan.max_failures == 0 and plan.failure_budget == "0"
    rows = plan.rows()
    assert [(r.cluster, r.wave, r.position, r.gate_before) for r in rows] == [
        ("staging", 0, 1, False), ("prod-eu-10pct", 1, 2, True), ("prod-eu", 2, 3, True),
        ("prod-us", 2, 4, False), ("prod-ap", 2, 5, False)]


def test_canary_drops_non_targets_and_empty_waves(demo):
    plan = build_plan(demo, select(demo, "prod-eu,prod-us"), "canary")
    assert [w.clusters for w in plan.waves] == [("prod-eu", "prod-us")]
    assert plan.waves[0].gate_before is False  # no gate before the first wave
    plan = build_plan(demo, select(demo, "staging,prod-us"), "canary")
    assert [w.clusters for w in plan.waves] == [("staging",), ("prod-us",)]
    assert [w.gate_before for w in plan.waves] == [False, True]


def test_flags_override_strategy_settings(demo):
    plan = build_plan(demo, demo.ids, "canary", max_parallel=2, max_failures="40%")
    assert plan.max_parallel == 2 and plan.max_failures == 2 and plan.failure_budget == "40%"


def test_unknown_strategy(demo):
    with pytest.raises(ValidationError, match=r"--strategy: unknown strategy 'canry' "
                       r"\(did you mean 'canary'\?\); one of serial, parallel, canary"):
        build_plan(demo, demo.ids, "canry")


def test_percent_and_rest_waves():
    config = fleet([(f"c{i}", ("prod",) if i else ("staging",)) for i in range(10)],
                   strategies={"pct": Strategy("pct", (("staging",), ("10%",), ("50%",), ("rest",)),
                                               gates=True, max_parallel=3)})
    plan = build_plan(config, config.ids, "pct")
    # 10% of the 9 remaining rounds up to 1; 50% of the 8 left rounds up to 4.
    assert [w.clusters for w in plan.waves] == [
        ("c0",), ("c1",), ("c2", "c3", "c4", "c5"), ("c6", "c7", "c8", "c9")]
    assert plan.max_parallel == 3


def test_targets_in_no_wave_form_a_last_wave():
    config = fleet([("a", ("x",)), ("b", ("y",)), ("c", ("y",)), ("d", ())],
                   strategies={"s": Strategy("s", (("b",), ("a",)), gates=False)})
    plan = build_plan(config, config.ids, "s")
    assert [w.clusters for w in plan.waves] == [("b",), ("a",), ("c", "d")]
    assert not any(w.gate_before for w in plan.waves)


def test_wave_entries_by_group_and_glob_keep_entry_order():
    config = fleet([("eu-1", ("eu",)), ("us-1", ("us",)), ("eu-2", ("eu",)), ("us-2", ("us",))],
                   strategies={"s": Strategy("s", (("us", "eu-*"),))})
    assert build_plan(config, config.ids, "s").order == ("us-1", "us-2", "eu-1", "eu-2")


def test_targets_are_checked_and_normalised(demo):
    assert build_plan(demo, ["prod-us", "staging", "prod-us"], "parallel").targets == (
        "staging", "prod-us")
    with pytest.raises(ValidationError, match="unknown cluster 'nope'"):
        build_plan(demo, ["nope"], "parallel")
    with pytest.raises(ValidationError, match="no target clusters"):
        build_plan(demo, [], "parallel")


def test_describe_and_json(demo):
    plan = build_plan(demo, demo.ids, "canary")
    text = plan.describe(live={"staging": "1.0", "prod-eu": None}, new="1.1")
    lines = text.splitlines()
    assert lines[0].startswith("strategy canary: 5 clusters in 3 waves, at most 10 at once; "
                               "no new cluster starts after a failure")
    assert lines[1].split() == ["#", "CLUSTER", "WAVE", "LIVE", "NEW"]
    assert lines[2].split() == ["1", "staging", "1", "1.0", "1.1"]
    assert lines[3].split() == ["2", "prod-eu-10pct", "2", "(gate)", "-", "1.1"]
    assert plan.to_json()["waves"][1] == {"index": 1, "clusters": ["prod-eu-10pct"],
                                          "gate_before": True, "bake": 0.0}
    serial = build_plan(demo, ["staging"], "serial")
    assert "stops at the first failure" in serial.describe()
    assert "clusters not started are skipped" in serial.policy()
    assert "tolerates 2 failures (40%)" in build_plan(
        demo, demo.ids, "parallel", max_failures="40%").policy()


# --------------------------------------------------------------------------- properties


@st.composite
def fleets(draw):
    n = draw(st.integers(1, 12))
    group_names = ["prod", "eu", "us", "canary"]
    clusters = [(f"c{i}", tuple(draw(st.lists(st.sampled_from(group_names), unique=True,
                                              max_size=3))))
                for i in range(n)]
    used_groups = sorted({g for _, gs in clusters for g in gs})
    entry = st.one_of(st.sampled_from([c for c, _ in clusters]),
                      st.sampled_from(["rest", "c1*", "c*"]),
                      st.integers(1, 100).map(lambda p: f"{p}%"),
                      *( [st.sampled_from(used_groups)] if used_groups else []))
    waves = draw(st.lists(st.lists(entry, min_size=1, max_size=3).map(tuple),
                          min_size=1, max_size=5))
    gates = draw(st.booleans())
    order = tuple(draw(st.permutations([c for c, _ in clusters]))[: draw(st.integers(0, n))])
    config = fleet(clusters, {"s": Strategy("s", tuple(waves), gates=gates)}, order=order)
    targets = draw(st.lists(st.sampled_from(config.ids), min_size=1, unique=True))
    return config, targets


def check_common(plan: Plan, config: FleetConfig, targets: list[str]) -> None:
    placed = [cid for w in plan.waves for cid in w.clusters]
    assert sorted(placed) == sorted(set(targets))  # every target exactly once, nothing else
    assert plan.targets == tuple(c for c in config.ids if c in targets)
    assert all(w.clusters for w in plan.waves)  # no empty wave
    assert [w.index for w in plan.waves] == list(range(len(plan.waves)))
    assert not plan.waves[0].gate_before
    assert [r.cluster for r in plan.rows()] == placed
    assert [r.position for r in plan.rows()] == list(range(1, len(placed) + 1))
    positions = {r.cluster: r.position for r in plan.rows()}
    for cid in placed:
        assert plan.order.index(cid) + 1 == positions[cid]   # rows follow the start order
        assert cid in plan.waves[plan.wave_of(cid)].clusters


@settings(max_examples=150, deadline=None)
@given(fleets())
def test_named_strategy_properties(case):
    config, targets = case
    plan = build_plan(config, targets, "s")
    check_common(plan, config, targets)
    strategy = config.strategies["s"]
    assert all(w.gate_before == (strategy.gates and w.index > 0) for w in plan.waves)
    # The waves are exactly the resolution of the strategy's waves.
    assert tuple(w.clusters for w in plan.waves) == resolve_waves(
        config, strategy.waves, plan.targets)
    # When every wave has one entry, each wave keeps config order.
    if all(len(w) == 1 for w in strategy.waves):
        position = {cid: i for i, cid in enumerate(config.ids)}
        for w in plan.waves:
            assert [position[c] for c in w.clusters] == sorted(position[c] for c in w.clusters)


@settings(max_examples=100, deadline=None)
@given(fleets(), st.data())
def test_serial_properties(case, data):
    config, targets = case
    plan = build_plan(config, targets, "serial")
    check_common(plan, config, targets)
    assert len(plan.waves) == 1 and plan.max_parallel == 1 and plan.stop_on_first_failure
    head = [c for c in config.order if c in targets]
    assert list(plan.order[: len(head)]) == head
    tail = plan.order[len(head):]
    assert list(tail) == [c for c in config.ids if c in targets and c not in head]
    # an explicit order made of targets: it comes first, the rest in config order
    order = data.draw(st.permutations(targets)).copy()[: data.draw(st.integers(1, len(targets)))]
    plan = build_plan(config, targets, "serial", order=order)
    assert list(plan.order[: len(order)]) == order
    assert list(plan.order[len(order):]) == [c for c in config.ids
                                              if c in targets and c not in order]
    outsider = [c for c in config.ids if c not in targets]
    if outsider:
        with pytest.raises(ValidationError, match=f"'{outsider[0]}' is not a target"):
            build_plan(config, targets, "serial", order=[*order, outsider[0]])


@settings(max_examples=100, deadline=None)
@given(fleets(), st.integers(0, 100), st.integers(1, 50))
def test_parallel_properties(case, percent, limit):
    config, targets = case
    plan = build_plan(config, targets, "parallel", max_parallel=limit,
                      max_failures=f"{percent}%")
    check_common(plan, config, targets)
    assert len(plan.waves) == 1 and plan.max_parallel == limit
    assert plan.max_failures == len(targets) * percent // 100


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), min_size=1, max_size=6, unique=True),
       st.integers(1, 100))
def test_percent_wave_rounds_up(targets, percent):
    config = fleet([(c, ()) for c in "abcdef"],
                   {"s": Strategy("s", ((f"{percent}%",), ("rest",)))})
    plan = build_plan(config, targets, "s")
    assert len(plan.waves[0].clusters) == math.ceil(len(targets) * percent / 100)


@settings(max_examples=150, deadline=None)
@given(fleets(), st.lists(st.tuples(st.booleans(), st.sampled_from(["c0", "c1", "c1*", "prod", "eu", "c*"])),
                          min_size=1, max_size=4))
def test_select_properties(case, terms):
    config, _ = case
    selector = ",".join(("!" if neg else "") + t for neg, t in terms)

    def names(term):
        return {c.id for c in config.clusters
                if fnmatch.fnmatchcase(c.id, term) or c.id == term or term in c.groups}

    if any(not names(t) for _, t in terms):
        with pytest.raises(ValidationError, match="matches no cluster"):
            select(config, selector)
        return
    includes = [names(t) for neg, t in terms if not neg]
    expected = set().union(*includes) if includes else set(config.ids)
    for neg, t in terms:
        if neg:
            expected -= names(t)
    if not expected:
        with pytest.raises(ValidationError, match="selects no cluster"):
            select(config, selector)
        return
    assert ids(select(config, selector)) == tuple(c for c in config.ids if c in expected)


# --------------------------------------------------------------------------- bake


def test_bake_per_strategy_per_wave_and_the_flag(tmp_path):
    path = tmp_path / "clusters.yaml"
    path.write_text(
        "app: {name: web, image: r.example.com/web}\n"
        "clusters:\n  - {id: s1, groups: [staging]}\n  - {id: p1, groups: [prod]}\n"
        "  - {id: p2, groups: [prod]}\n"
        "strategies:\n  soak:\n    bake: 2m\n    gates: true\n"
        "    waves:\n      - {clusters: [staging], bake: 30s}\n      - [p1]\n")
    config = load(path)
    plan = build_plan(config, config.ids, "soak")
    # Its own 30s; the strategy's 2m; and the leftover wave takes the strategy's too.
    assert [(w.clusters, w.bake) for w in plan.waves] == \
        [(("s1",), 30.0), (("p1",), 120.0), (("p2",), 120.0)]
    assert [w["bake"] for w in plan.to_json()["waves"]] == [30.0, 120.0, 120.0]
    assert [w.bake for w in build_plan(config, config.ids, "soak", bake=5).waves] == [5, 5, 5]
    assert build_plan(config, config.ids, "parallel", bake=7).waves[0].bake == 7
    assert build_plan(config, config.ids, "serial").waves[0].bake == 0
    with pytest.raises(ValidationError, match="--bake"):
        build_plan(config, config.ids, "parallel", bake=-1)
    path.write_text(path.read_text().replace("bake: 30s", "bake: soon"))
    with pytest.raises(Exception, match=r"clusters.yaml:\d+: strategies.soak.waves\[0\].bake"):
        load(path)
