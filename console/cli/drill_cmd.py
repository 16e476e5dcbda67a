"""`release-console drill`: rehearse a release and its rollback on a local fleet.

    release-console drill [--strategy S] [--fail CLUSTER ...] [--json] [--lab]
        [--fail-fast-grace S] [--config F]

Builds a local fleet from the fleet file - the simulator in this process, or the real lab
(`--lab`, console/lab) - so the drill never needs nor touches the real fleet. Each
cluster first runs the version the ledger records for it (`drill-baseline` where it
records none), then a drill tag (`drill-YYYYMMDD-HHMMSS`) is released with the strategy
(default parallel); the tag never pulls on the `--fail` clusters (the simulator's
`never_pull`), so their failure is detected and they are rolled back. Gates approve
themselves. Freeze windows and notifications do not apply: nothing real is released.

Printed per cluster: detect_s, rollback_s and ok against `app.rollout_timeout` (`--json`:
one JSON object). The result is recorded in the ledger as a `drill` line, which the
version matrix, `status` and `history` never count as a release.
Exit codes: 0 every rollback finished within the rollout timeout; 1 one did not (or a
`--fail` cluster was not reached, or the baseline could not be set up); 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.cli import config_path
from console.cli.flags import add_fail_fast_grace, add_json
from console.errors import UserError, ValidationError

if TYPE_CHECKING:
    from console.cli.drill import DrillResult
    from console.config import FleetConfig


class BaselineError(UserError):
    """The local fleet could not be brought to the baseline: the drill did not run."""

    exit_code = 1


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """`drill`'s own arguments (its help texts are in `console.cli.commands`)."""
    parser.add_argument("--strategy", default="parallel", metavar="NAME",
                        help="parallel (default), serial, or a strategy of clusters.yaml")
    parser.add_argument("--fail", action="append", default=[], metavar="CLUSTER",
                        help="a cluster where the drill tag fails (repeat, or a,b)")
    add_json(parser, "the result as one JSON object")
    parser.add_argument("--lab", action="store_true",
                        help="drill on the real local lab (console/lab) instead of the simulator")
    add_fail_fast_grace(parser, "ErrImagePull", "default: as deploy, 10")


def failing(config: Any, given: Sequence[str]) -> tuple[str, ...]:
    """The `--fail` clusters (repeated or comma-separated), each checked to exist."""
    out: list[str] = []
    for item in given:
        for cid in (part.strip() for part in item.split(",")):
            if not cid:
                continue
            try:
                config.cluster(cid)
            except ValidationError as exc:
                raise ValidationError(f"--fail: {exc}") from None
            if cid not in out:
                out.append(cid)
    return tuple(out)


def drill_tag(now: datetime | None = None) -> str:
    """`drill-20261201-163007`: a tag no real release uses."""
    return f"drill-{(now or datetime.now(timezone.utc)):%Y%m%d-%H%M%S}"


def local_fleet_file(rewritten: Path, scratch: Path) -> Path:
    """The rewritten fleet file, made safe for a drill: its own scratch ledger, no
    notifications, no freeze windows (nothing real is released)."""
    from console.sim.fleetfile import read_yaml, write_private
    import yaml

    raw = read_yaml(rewritten) or {}
    app = raw.setdefault("app", {})
    app["history"] = {"path": str(scratch)}
    app.pop("notify", None)
    raw.pop("freeze", None)
    write_private(rewritten, yaml.safe_dump(raw, sort_keys=False))
    return rewritten


@contextmanager
def simulated(source: Path, tmp: Path, tag: str, fail: Sequence[str]) -> Iterator[Path]:
    """The simulator for the fleet file, the drill tag never pulling on `fail`; yields
    the rewritten fleet file."""
    from console.sim import SimFleet

    fleet = SimFleet.from_config(source)
    fleet.start()
    try:
        for cid in fail:
            fleet.set_faults(cid, never_pull=(*fleet.settings_of(cid).never_pull, tag))
        yield fleet.write_kubeconfigs(tmp / "fleet", config_path=source)
    finally:
        fleet.stop()


@contextmanager
def lab(source: Path, tmp: Path, tag: str, fail: Sequence[str]) -> Iterator[Path]:
    """The real lab (console/lab) for the fleet file, the drill tag never pulling on
    `fail`; yields the rewritten fleet file."""
    try:
        from console.lab import LabError, LabFleet
    except ModuleNotFoundError as exc:
        if exc.name not in ("console.lab", "console.lab.fleet"):
            raise
        raise UserError("--lab: the real lab (console/lab) is not part of this installation; "
                        "drill on the simulator (without --lab)") from None
    fleet = LabFleet.from_config(source, tmp / "lab")
    for cid in fail:
        settings = fleet.settings[cid]
        settings.update({"never_pull": (*settings.never_pull, tag)})
    try:
        fleet.start(progress=lambda line: print(line, file=sys.stderr, flush=True))
    except LabError as exc:
        fleet.stop()
        raise UserError(f"--lab: {exc}") from None
    try:
        yield fleet.write_kubeconfigs(tmp / "fleet", config_path=source)
    finally:
        fleet.stop()


def recorded_baseline(config: Any) -> tuple[dict[str, str], Any]:
    """Each cluster's version as the ledger records it (the placeholder where none), and
    the open ledger (the drill is recorded there at the end)."""
    from console.cli.drill import PLACEHOLDER
    from console.history import Ledger

    ledger = Ledger.for_config(config)
    rows = ledger.matrix({cid: None for cid in config.ids})
    return {row.cluster: row.recorded or PLACEHOLDER for row in rows}, ledger


def run(args: argparse.Namespace) -> int:
    """Run the drill; exit 0 when every rollback worked within the rollout timeout."""
    from console.cli.deploy_cmd import load_config
    from console.cli.event_printer import EventPrinter
    from console.cli.drill import rehearse, set_baseline
    from console.config import load
    from console.engine import Engine, ReleaseRequest
    from console.history.operator import current_operator

    config = load_config(args)
    fail = failing(config, args.fail)
    Engine(config).plan(ReleaseRequest(tag="drill", strategy=args.strategy))  # bad: exit 2
    source = Path(config_path(args))
    tag = drill_tag()
    started = time.time()
    baseline, ledger = recorded_baseline(config)
    try:
        start_fleet: Callable[..., Any] = lab if args.lab else simulated
        say = (lambda text: print(text, file=sys.stderr, flush=True))
        with tempfile.TemporaryDirectory(prefix="release-console-drill-") as tmp_name:
            tmp = Path(tmp_name)
            os.chmod(tmp, 0o700)   # the kubeconfigs inside carry the local fleet's tokens
            say(f"drill: starting the local fleet ({'lab' if args.lab else 'simulator'}) "
                f"for {len(config.ids)} cluster(s)")
            with start_fleet(source, tmp, tag, fail) as rewritten:
                local = load(local_fleet_file(rewritten, tmp / "scratch-history"))
                options = {} if args.fail_fast_grace is None else {
                    "grace": args.fail_fast_grace}
                engine = Engine(local, **options)
                printer = [] if args.json else [EventPrinter(False, sys.stderr)]
                try:
                    say("drill: baseline " + ", ".join(f"{c}={v}" for c, v in baseline.items()))
                    problems = set_baseline(engine, baseline)
                    if problems:
                        raise BaselineError("drill: the baseline could not be set up on "
                                            "the local fleet: " + "; ".join(problems))
                    say(f"drill: releasing {tag} with {args.strategy}, failing on "
                        f"{', '.join(fail) or 'no cluster'}")
                    result = rehearse(engine, tag, fail, baseline, args.strategy, printer)
                finally:
                    engine.close()
                    for p in printer:
                        p.close()
        record = drill_record(result, config, fail, "lab" if args.lab else "sim", started,
                              current_operator().name)
        pushed = ledger.record_drill(record)
    finally:
        ledger.close()
    if args.json:
        print(json.dumps(record, separators=(",", ":")), flush=True)
    else:
        print(report(result, record["id"]), flush=True)
    if not pushed.ok:
        print(f"release-console: warning: history: {pushed.message}", file=sys.stderr)
    return result.exit_code


def drill_record(result: DrillResult, config: FleetConfig, fail: Sequence[str], fleet: str, started: float,
                 operator: str) -> dict[str, Any]:
    """The drill as the ledger's `drill` line and `--json` print it."""
    from console.history.records import iso_time

    return {"id": f"d-{time.strftime('%Y%m%d-%H%M', time.gmtime(started))}-"
                  f"{secrets.token_hex(2)}",
            "app": config.app.name, "tag": result.tag, "strategy": result.strategy,
            "fleet": fleet, "fail": list(fail), "operator": operator,
            "start": iso_time(started), "end": iso_time(time.time()),
            "rollout_timeout": result.rollout_timeout, "release_outcome": result.release_outcome,
            "ok": result.ok, "exit_code": result.exit_code,
            "clusters": [c.to_json() for c in result.clusters]}


def report(result: DrillResult, drill_id: str) -> str:
    """The human table: one line per cluster, then the verdict."""
    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}s"

    rows = [("CLUSTER", "ROLE", "BASELINE", "OUTCOME", "DETECT", "ROLLBACK", "OK")]
    rows += [(c.cluster, c.role, c.baseline, c.outcome, secs(c.detect_s), secs(c.rollback_s),
              "ok" if c.ok else f"NO - {c.error}") for c in result.clusters]
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:6], widths)), row[6]])
             for row in rows]
    verdict = ("passed: every rollback finished within the rollout timeout "
               f"({result.rollout_timeout:g}s)" if result.ok else
               "FAILED: not every failure was rolled back within the rollout timeout "
               f"({result.rollout_timeout:g}s)")
    return "\n".join([*lines, f"drill {drill_id} ({result.tag}, {result.strategy}): {verdict}"
                      "; recorded in the ledger as a drill"])
