"""`release-console deploy`: one release, headless - for a terminal or a CI job.

    release-console deploy [--tag T] [--clusters SEL] [--strategy serial|parallel|NAME]
        [--order a,b] [--max-parallel N] [--max-failures N|P%] [--yes] [--build] [--json]
        [--junit FILE] [--override-freeze --reason TEXT]
        [--wait-for-approval [--gate-timeout 1h]] [--config F]
        [--release-id ID] [--shard K/N --release-id ID [--shard-timeout S]
        [--shard-board CLUSTER]] [--output-timeout D]

Without `--tag` the tag is `<short commit>-<build>` (`console.version_tag`): the app
repository's HEAD (the directory of the fleet file) and `$BUILD_NUMBER`, else the next
number after the ledger's; the choice is printed. When that image is not in the registry
and the fleet file has `app.build.command`, the build runs with `--build` or `--yes`, is
asked for on a terminal, and is otherwise only suggested (pre-flight then fails, exit 2).

The release is recorded in the Git ledger (`console.history`) and notified
(`console.notify`) as the fleet file says. Progress: one line per step on a terminal
(or in a CI log); with `--json`, one JSON
event per line on stdout (the `console.events` vocabulary, a stable API). At a gate,
`--yes` approves, a terminal asks, `--wait-for-approval` waits for `release-console
control RELEASE_ID approve` (up to `--gate-timeout`, then stops: exit 3), anything else
stops the release (exit 3). While it runs the release listens on the control channel
(`console.engine.steering`): pause, resume, abort, skip and retry from anywhere that
has the app's rights on its clusters.
A cluster in an open freeze window of the fleet file (`freeze:`) fails pre-flight (exit
2, naming the window and its clusters) unless `--override-freeze --reason TEXT`; a
window that opens during the release stops new starts (exit 3).
With `--shard K/N` this process releases the K-th of N stable slices of the clusters;
the N processes (same flags and `--release-id`) keep pre-flight, waves, gates (shard 1
answers them) and the failure budget global on a shard board every shard must reach
(`--shard-board`); each shard listens on the control channel for its own clusters
(`console.engine.shards`, `docs/scale.md`).
Exit codes: 0 all healthy; 1 the release failed (failed clusters rolled back); 2 bad
input or pre-flight failure, nothing touched; 3 stopped at a gate, by a freeze window
that opened, or aborted.

The selection flags live here; `plan` and `check` reuse them. The event printer is
`console.cli.event_printer`.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from console.cli.event_printer import EventPrinter, after_printing
from console.cli.flags import (add_all_cpus, add_build, add_fail_fast_grace, add_json,
                                one_cpu_unless_asked, seconds)
from console.cli.output import out
from console.session import Session

if TYPE_CHECKING:
    from console.engine import Engine
    from console.engine.api import (Approver, ReleaseControl, ReleaseRequest,
                                    ReleaseResult)


def add_selection_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that say what goes where (shared by deploy, plan and check)."""
    parser.add_argument("--tag", metavar="T",
                        help="image tag to release (OCI tag grammar); default: the app "
                             "repository's short commit and the build number, e.g. 3f2a9c1-42")
    parser.add_argument("--clusters", default="", metavar="SEL",
                        help="targets: ids, groups, globs (prod-*), exclusions (!prod-us), "
                             "comma-separated; default all")
    parser.add_argument("--strategy", default="serial", metavar="NAME",
                        help="serial (default), parallel, or a strategy of clusters.yaml")
    parser.add_argument("--order", default="", metavar="A,B",
                        help="serial order (each a target; the others follow in config order)")
    parser.add_argument("--max-parallel", type=_positive_int, default=None, metavar="N",
                        help="clusters rolling out at once (parallel and named strategies)")
    parser.add_argument("--max-failures", default=None, metavar="N|P%",
                        help="failure budget: past it no new cluster starts")
    parser.add_argument("--bake", type=_bake_duration, default=None, metavar="DURATION",
                        help="watch every wave this long once healthy (e.g. 10m) before "
                             "the next wave, its gate or the end; overrides the strategy's "
                             "bake")
    parser.add_argument("--pace", metavar="N/DURATION",
                        help="at most N clusters start in any DURATION (a sliding window), "
                             "e.g. 20/10s; overrides the strategy's max_starts")
    parser.add_argument("--on-failure", choices=("cluster", "wave", "release"), default=None,
                        help="what a failure rolls back: the failed cluster (default), its "
                             "whole wave, or every cluster the release reached (the "
                             "release then ends); overrides the strategy's on_failure")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def request_from(args: argparse.Namespace, tag: str | None = None) -> ReleaseRequest:
    """A `ReleaseRequest` from parsed selection flags."""
    from console.engine import ReleaseRequest
    order = tuple(o.strip() for o in (args.order or "").split(",") if o.strip())
    return ReleaseRequest(tag=tag if tag is not None else (args.tag or ""),
                          clusters=args.clusters or "", strategy=args.strategy or "serial",
                          order=order, max_parallel=args.max_parallel,
                          max_failures=args.max_failures,
                          override_freeze=freeze_override(args),
                          pin=not getattr(args, "no_pin", False),
                          bake=getattr(args, "bake", None),
                          pace=getattr(args, "pace", None),
                          on_failure=getattr(args, "on_failure", None))


def freeze_override(args: argparse.Namespace) -> str | None:
    """The reason of `--override-freeze --reason TEXT` (None without the flag); one
    flag without the other is refused (exit 2)."""
    from console.errors import ValidationError
    override, reason = getattr(args, "override_freeze", False), getattr(args, "reason", None)
    if reason is not None:
        reason = " ".join(reason.split())[:300]   # one line: it goes into chat and the ledger
    if override and not reason:
        raise ValidationError("--override-freeze needs --reason TEXT (why the freeze is "
                              "overridden; recorded in the ledger and notified)")
    if reason and not override:
        raise ValidationError("--reason goes with --override-freeze")
    return reason if override else None


def choose_tag(args: argparse.Namespace, config: Any) -> tuple[str, bool]:
    """(tag, defaulted): `--tag`, else the default tag, printed to stderr with its origin.

    Raises `UserError` when there is no default (not a Git repository: pass --tag).
    """
    if args.tag:
        return args.tag, False
    from console.history import Ledger
    from console.version_tag import app_repository, default_tag, short_commit
    repo = app_repository(config)
    short_commit(repo)   # outside a Git repository: say so before opening the ledger
    build = os.environ.get("BUILD_NUMBER", "").strip()
    tags: list[str] = []
    if not build.isdigit():
        ledger = Ledger.for_config(config)
        try:
            tags = [release.version for release in ledger.history()]
        finally:
            ledger.close()
    tag = default_tag(repo, tags)
    origin = "$BUILD_NUMBER" if build.isdigit() else "the next build number in the ledger"
    print(f"release-console: no --tag given: using {tag} (commit of {repo}, {origin})",
          file=sys.stderr, flush=True)
    return tag, True


def offer_build(config: Any, tag: str, build: bool) -> None:
    """When `tag`'s image is not in the registry and the app has a build command: run it
    if `build` (`--build`/`--yes`), ask on a terminal, else say how. Raises `UserError`
    when the build fails; otherwise pre-flight's image check decides."""
    from console.errors import UserError
    from console.registry import image_exists
    from console.version_tag import build_offer, run_build
    offer = build_offer(config, tag, image_exists(config.app.image, tag, config.app.registry))
    if offer is None:
        return
    out = sys.stderr
    if not build and sys.stdin.isatty():
        print(f"{offer.reason}. Build it now with `{offer.command}`? [y/N] ", end="",
              file=out, flush=True)
        build = sys.stdin.readline().strip().lower() in ("y", "yes")
    if not build:
        print(f"release-console: {offer.reason}; the fleet file's build command "
              f"(`{offer.command}`) can make it: run again with --build (or --yes)",
              file=out, flush=True)
        return
    print(f"release-console: {offer.reason}: building it with `{offer.command}` "
          f"(RELEASE_TAG={tag})", file=out, flush=True)
    result = run_build(offer, on_line=lambda line: print(f"  build: {line}", file=out,
                                                         flush=True))
    if not result.ok:
        raise UserError(f"app.build.command: {result.detail}; nothing was released")
    print(f"release-console: {result.detail}", file=out, flush=True)


def load_config(args: argparse.Namespace) -> Any:
    """The fleet file named by `--config` / `$RELEASE_CONSOLE_CONFIG` / ./clusters.yaml."""
    from console.cli import config_path
    from console.config import load
    return load(config_path(args))


def warn(message: str) -> None:
    """One warning line on stderr (any thread)."""
    print(f"release-console: warning: {message}", file=sys.stderr, flush=True)


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """`deploy`'s own arguments (its help texts are in `console.cli.commands`)."""
    add_selection_flags(parser)
    parser.add_argument("--yes", action="store_true",
                        help="approve every gate (and run a needed build, as --build)")
    add_build(parser)
    add_json(parser, "one JSON event per line")
    parser.add_argument("--junit", metavar="FILE",
                        help="write a JUnit report (one case per cluster); its directory "
                             "must exist and be writable (checked before the release)")
    parser.add_argument("--override-freeze", action="store_true",
                        help="release even into open freeze windows (needs --reason; "
                             "recorded in the ledger and notified with who gave it)")
    parser.add_argument("--reason", metavar="TEXT",
                        help="why the freeze is overridden (with --override-freeze)")
    parser.add_argument("--no-pin", action="store_true",
                        help="release the plain tag: do not resolve it to its digest at plan "
                             "time (for registries that cannot answer a manifest HEAD; a "
                             "tag re-pushed mid-release then reaches later waves)")
    add_fail_fast_grace(parser, "ErrImagePull/CrashLoopBackOff", "default 10")
    add_all_cpus(parser)
    parser.add_argument("--wait-for-approval", action="store_true",
                        help="at each gate wait for `release-console control RELEASE_ID "
                             "approve` (from any machine with the app's rights) instead "
                             "of asking the terminal")
    parser.add_argument("--gate-timeout", type=_duration, default=None, metavar="D",
                        help="with --wait-for-approval: stop the release (exit 3) when a "
                             "gate has no decision within D (e.g. 90s, 30m, 1h; default: "
                             "wait as long as it takes)")
    parser.add_argument("--shard", metavar="K/N", default=None,
                        help="release only the K-th of N stable slices of the plan's "
                             "clusters (sha256 of the cluster id mod N); waves, gates and the "
                             "failure budget stay global across the N processes "
                             "(docs/scale.md). Needs --release-id, the same in every shard")
    parser.add_argument("--release-id", metavar="ID", default=None,
                        help="the release id (default: a new one); with --shard every "
                             "shard passes the same, e.g. r-$BUILD_NUMBER")
    parser.add_argument("--shard-board", metavar="CLUSTER", default=None,
                        help="with --shard: the cluster of the fleet file holding the shard "
                             "board, one every shard reaches (default: the first target in "
                             "sorted order); the same in every shard")
    parser.add_argument("--shard-timeout", type=seconds, default=120.0, metavar="S",
                        help="with --shard: seconds without a heartbeat from another shard "
                             "before this one takes it as gone and fails the gate (exit 3; "
                             "default 120)")
    parser.add_argument("--output-timeout", type=_duration, default=30.0, metavar="D",
                        help="once the release has ended, give up the event lines left "
                             "when stdout takes none of them for D (a reader that never "
                             "reads); stderr says how many, the exit code stays the "
                             "release's (default 30s)")


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration such as 90s, 30m or 1h, "
                                         f"got {text!r}") from None
    if not 0 < value <= 7 * 86400:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 7 days, got {text}")
    return value


def _bake_duration(text: str) -> float:
    from console.config import is_zero_duration, parse_duration
    if is_zero_duration(text):
        return 0.0
    try:
        value = parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration such as 90s or 10m, got "
                                         f"{text!r}") from None
    if not 0 <= value <= 24 * 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 24h, got {text!r}")
    return value


def run_interruptible(engine: Engine, request: ReleaseRequest, approver: Approver,
                      control: ReleaseControl | None = None) -> ReleaseResult:
    """Run the release in a worker thread; Ctrl-C or SIGTERM (a cancelled CI job) aborts it
    cleanly - no new cluster starts, running rollouts are interrupted and recorded - and a
    second Ctrl-C quits at once."""
    import signal

    from console.engine import ReleaseControl
    control = control if control is not None else ReleaseControl()
    box: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["result"] = engine.run(request, approver, control)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            box["error"] = exc
        finally:
            done.set()

    def abort(*_args: Any) -> None:
        if control.aborted:
            raise KeyboardInterrupt
        print("release-console: aborting - no new cluster starts, running rollouts are "
              "interrupted (Ctrl-C again to quit at once)", file=sys.stderr, flush=True)
        control.abort(rollback=False, by=f"{request.operator} (signal)")

    worker = threading.Thread(target=work, name="release", daemon=True)
    previous = signal.signal(signal.SIGTERM, abort) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        worker.start()
        # Waited on an event of our own, not `worker.join`: a KeyboardInterrupt inside
        # `join` can leave the thread looking finished (`is_alive()` False while it
        # runs; CPython before 3.13), and the release's result was then missing.
        while not done.is_set():
            try:
                done.wait(0.5)
            except KeyboardInterrupt:
                abort()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if "error" in box:
        raise box["error"]
    return box["result"]


def run(args: argparse.Namespace) -> int:
    """Run the release; the exit code is the release's."""
    from console.engine import Engine, Outcome, ReleaseControl
    from console.cli.approvals import headless_approver, refuse_yes_for_approvals
    from console.engine.api import wait_for_approval
    from console.errors import ValidationError
    from console.junit import check_writable, write
    from console.names import validate_tag
    # A report that cannot be written is refused before anything starts (exit 2), not
    # discovered after the release (which would turn its exit code into a traceback).
    if args.junit is not None:
        check_writable(args.junit)
    if args.gate_timeout is not None and not args.wait_for_approval:
        raise ValidationError("--gate-timeout goes with --wait-for-approval")
    if args.wait_for_approval and args.yes:
        raise ValidationError("--wait-for-approval and --yes contradict each other: --yes "
                              "approves every gate at once")
    from console.engine.collector import pace_for_releases
    pace_for_releases()     # this process runs a release: fewer collector passes
    config = load_config(args)
    tag, defaulted = choose_tag(args, config)
    if defaulted or args.build:
        offer_build(config, tag, args.build or args.yes)
    one_cpu_unless_asked(args, config)     # after the build, which may use every core
    request = request_from(args, tag)
    shard = None
    if args.shard is not None:
        from console.names import validate_release_id
        from console.plan import parse_shard
        shard = parse_shard(args.shard)
        if not args.release_id:
            raise ValidationError("--shard needs --release-id ID: every shard of the "
                                  "release passes the same one")
        if args.shard_timeout <= 0:
            raise ValidationError("--shard-timeout must be more than 0")
        if args.shard_board is not None and args.shard_board not in config.ids:
            raise ValidationError(f"--shard-board {args.shard_board}: no such cluster in "
                                  f"{config.path}")
        request = replace(request, shard=shard, release_id=args.release_id,
                          shard_timeout=args.shard_timeout, shard_board=args.shard_board)
        validate_release_id(args.release_id, "--release-id")
    elif args.shard_board is not None:
        raise ValidationError("--shard-board goes with --shard")
    elif args.release_id:
        from console.names import validate_release_id
        request = replace(request, release_id=validate_release_id(args.release_id,
                                                                  "--release-id"))
    printer = EventPrinter(args.json, stall=args.output_timeout)
    options = {} if args.fail_fast_grace is None else {"grace": args.fail_fast_grace}
    engine = Engine(config, listeners=[printer], **options)
    # Bad input (tag, selection, strategy) is refused before the ledger is opened, so a
    # refused release leaves no trace - not even a new, empty ledger repository.
    validate_tag(request.tag)
    plan = engine.plan(request)
    if args.yes:
        refuse_yes_for_approvals(config, plan)
    try:
        # From here to `printer.close` nothing written to stderr waits on its reader (a
        # warning into a `2>&1` pipe nobody reads held the release).
        printer.take_stderr()
        # The session: ledger, notifier, a stopped console's releases reconciled, and
        # who acts (the request's operator).
        with Session(config, engine, on_warning=warn) as session:
            request = replace(request, operator=session.operator)
            # Every headless release listens on the control channel while it runs; of a
            # sharded release every shard does, for its own clusters (shard 1 also
            # answers the gates for all: `console.engine.shards.taker`).
            control = ReleaseControl(steerable=True)
            approver = wait_for_approval(control, args.gate_timeout) \
                if args.wait_for_approval else headless_approver(
                    args.yes, session.operator, engine=engine, control=control)
            if not args.yes and sys.stdin.isatty():
                approver = after_printing(printer, approver)
            result = run_interruptible(engine, request, approver, control)
    finally:
        try:
            engine.close()
        finally:
            # Every event printed before the summary (and before the process exits);
            # and stderr the real one again even when the engine's close failed (or a
            # second Ctrl-C came), so the traceback that follows is not lost in the pump.
            printer.close()
    if args.junit is not None:
        try:
            write(args.junit, result, config.app.name, request.tag, args.strategy)
        except OSError as exc:   # checked writable at the start; the disk may still fill
            print(f"release-console: warning: JUnit report {args.junit} not written: "
                  f"{exc.strerror or exc}", file=sys.stderr, flush=True)
    if not args.json:
        for c in result.clusters:
            extra = f" - {c.error}" if c.error else ""
            back = f" (rolled back to {c.rolled_back_to})" if c.rolled_back_to else ""
            out(f"  {c.cluster:<20} {c.outcome:<12} {c.from_version or '-'} -> "
                f"{c.to_version or '-'}  {c.duration:5.1f}s{back}{extra}")
        if result.outcome is Outcome.PREFLIGHT_FAILED and result.preflight is not None:
            print(result.preflight.table(), file=sys.stderr, flush=True)
        out(f"release {result.release_id}: {result.outcome} (exit {result.exit_code})"
            + (f": {result.message}" if result.message else ""))
    for error in engine.listener_errors:
        print(f"release-console: warning: {error}", file=sys.stderr)
    return result.exit_code
