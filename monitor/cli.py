"""The ``paymon`` command line. The only place where real objects are built and wired together.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error; ``paymon status`` also 3 when a channel is down and
4 when evaluation is failing (see :func:`monitor.status.status_exit_code`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from monitor import __version__, argtypes
from monitor.alerts.console import ConsoleSink
from monitor.alerts.dispatch import Sink
from monitor.argtypes import OneLineParser
from monitor.clock import Clock, SystemClock
from monitor.config import ChannelConfig, LoadedConfig, WebhookSink, load_config
from monitor.config import JsonlSource as JsonlSourceConfig
from monitor.config import NginxSource as NginxSourceConfig
from monitor.errors import ConfigError, PaymonError, SinkError, UsageError
from monitor.idle_parts import has_order_source
from monitor.ingest import DujiaokaSource, JsonlSource, NginxSource, Source
from monitor.locks import file_lock, lock_path
from monitor.metrics.prom import Metrics
from monitor.pipeline import Pipeline
from monitor.reconcile import QUERIERS, Replayer
from monitor.reconcile.reconciler import Reconciler, build_queriers
from monitor.routing import WebhookWeightSink, build_sinks
from monitor.routing.yaml_file import YamlWeightSink
from monitor.secret import RedactingFilter, Redactor
from monitor.status import status_exit_code, status_view
from monitor.status_table import status_lines
from monitor.store import Store
from monitor.store.reconcile import ReconcileStore
from monitor.timefmt import show_time, zone_label

__all__ = ["App", "build_app", "main"]

log = logging.getLogger("monitor")
DEFAULT_CONFIG = "config/monitor.yaml"
#: ``paymon backtest`` reports progress on stderr from this many evaluation steps on (a week at 1m is 10080).
BACKTEST_PROGRESS_STEPS = 2000


@dataclass
class App:
    """Everything one config needs at run time."""

    cfg: LoadedConfig
    store: Store
    clock: Clock
    metrics: Metrics
    pipeline: Pipeline
    #: The first YAML weight sink (the file the demo's shop reads), None without one.
    weights: YamlWeightSink | None
    reconciler: Reconciler | None = None


def setup_logging(redactor: Redactor, *, verbose: bool = False, stream: TextIO | None = None) -> None:
    """Log to stderr, every record passing the redactor first."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_paymon", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(redactor))
    handler._paymon = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpcore", "apscheduler", "alembic", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_app(cfg: LoadedConfig, *, clock: Clock | None = None, stream: TextIO | None = None,
              metrics: Metrics | None = None) -> App:
    """Open the store (migrating it) and wire the pipeline for ``cfg``."""
    clock = clock or SystemClock()
    store = Store.open(cfg.monitor.storage.url, clock=clock)
    metrics = metrics or Metrics(clock=clock)
    names = {c.id: c.name for c in cfg.channels}
    sinks: dict[str, Sink] = {}
    if cfg.monitor.notify.console:
        sinks["console"] = ConsoleSink(language=cfg.monitor.notify.language, names=names, stream=stream,
                                       timezone=cfg.monitor.display.timezone)
    if cfg.monitor.notify.telegram is not None:
        log.warning("notify.telegram is configured but the Telegram sink is not available yet; using the console")
        sinks.setdefault("console", ConsoleSink(language=cfg.monitor.notify.language, names=names, stream=stream,
                                                timezone=cfg.monitor.display.timezone))
    routing_sinks = build_sinks(cfg, store) if cfg.monitor.routing.mode != "off" else []
    weights = next((s for s in routing_sinks if isinstance(s, YamlWeightSink)), None)
    webhooks: dict[str, Sink] = {}
    if cfg.monitor.routing.writes:  # delivered from the outbox, where each change is queued as it is saved
        for hook in (WebhookWeightSink.from_config(s, clock=clock) for s in cfg.monitor.routing.all_sinks
                     if isinstance(s, WebhookSink)):
            webhooks[hook.name] = hook
    channel_ids = [c.id for c in cfg.channels]
    sources: list[Source] = []
    for src in cfg.monitor.sources:
        if isinstance(src, JsonlSourceConfig):
            sources.append(JsonlSource(source_id=src.source_id, path=src.path, timezone=src.timezone, store=store,
                                       clock=clock, channels=channel_ids, fields=src.fields))
        elif isinstance(src, NginxSourceConfig):
            sources.append(NginxSource(source_id=src.source_id, path=src.path, timezone=src.timezone, store=store,
                                       clock=clock, channels=channel_ids, callbacks=src.callbacks,
                                       pattern=src.pattern))
        else:
            sources.append(DujiaokaSource(source_id=src.source_id, url=src.url.reveal(), pay_channels=src.channels,
                                          store=store, clock=clock))
    pipeline = Pipeline(cfg, store, clock=clock, metrics=metrics, sinks=sinks, weights=routing_sinks,
                        sources=sources, webhooks=webhooks)
    queriers, skipped = build_queriers(cfg.channels, QUERIERS)
    for channel, why in skipped.items():
        log.info("reconcile: channel %s is not reconciled: %s", channel, why)
    if cfg.monitor.reconcile.replay_notify:
        for ch in cfg.channels:  # only kinds that can replay at all (check-config filters the same way)
            if ch.id in queriers and isinstance(queriers[ch.id], Replayer) and ch.notify_url is None:
                log.warning("reconcile.replay_notify: channel %s has no notify_url; its lost orders are reported, "
                            "not replayed", ch.id)
    reconciler = (Reconciler(cfg, store, queriers, clock=clock, metrics=metrics, report=pipeline.report_lost)
                  if queriers else None)
    return App(cfg, store, clock, metrics, pipeline, weights, reconciler)


def run_lock(cfg: LoadedConfig) -> contextlib.AbstractContextManager[None]:
    """One paymon per store at a time: an overlapping ``once`` (or ``run``) exits instead of doubling work."""
    return file_lock(lock_path(cfg.monitor.storage.url), busy="another paymon is already running on this store")


# -- commands -------------------------------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def unverifiable_queries(cfg: LoadedConfig) -> list[ChannelConfig]:
    """Channels whose query probe can verify no signature: their gateway signs only answers about orders that
    exist (epay V2), and they have neither a ``test_order`` probe nor an order source to find one."""
    from monitor.probes import ADAPTERS

    return [ch for ch in cfg.channels
            if ch.probes.query is not None and ch.probes.test_order is None
            and getattr(ADAPTERS.get(ch.kind), "signs_only_found_orders", False)
            and not has_order_source(cfg, ch.id)]


def cmd_check_config(args: argparse.Namespace) -> int:
    from monitor.idle_parts import idle_parts
    from monitor.sim.scenario import check_channels, load_scenario

    cfg = load_config(args.config)
    for path in args.scenario or ():
        check_channels(load_scenario(path), path, [c.id for c in cfg.channels])
    counts = ", ".join(_plural(n, what) for n, what in (
        (len(cfg.channels), "channel"), (len(cfg.monitor.rules), "rule"), (len(cfg.monitor.sources), "source")))
    print(f"ok: {cfg.monitor_path.name} and {cfg.channels_path.name} are valid ({counts})")
    from monitor.daemon import adapter_problems

    for channel, problem in adapter_problems(cfg.channels).items():
        reason = problem if problem.startswith("channel ") else f"channel {channel}: {problem}"
        print(f"warning: {cfg.redactor(reason)}; its probes will not run", file=sys.stderr)
    for ch in unverifiable_queries(cfg):
        print(f"warning: channel {ch.id}: its query probe can only ask about a sentinel order, whose answer {ch.kind} "
              "does not sign (it signs answers about orders that exist); add a test_order probe, or an order "
              "source with this channel's orders, so it asks about an order the gateway signs", file=sys.stderr)
    if cfg.monitor.reconcile.replay_notify:
        queriers, _ = build_queriers(cfg.channels, QUERIERS)
        for ch in cfg.channels:
            if ch.id in queriers and isinstance(queriers[ch.id], Replayer) and ch.notify_url is None:
                print(f"warning: channel {ch.id}: reconcile.replay_notify is on but the channel has no notify_url; "
                      "its lost orders will be reported, not replayed", file=sys.stderr)
    for warning in idle_parts(cfg):
        print(f"warning: {cfg.redactor(warning)}", file=sys.stderr)
    return 0


def cmd_once(args: argparse.Namespace) -> int:
    from monitor.daemon import Daemon, probe_summary

    cfg = load_config(args.config)
    setup_logging(cfg.redactor, verbose=args.verbose)
    with run_lock(cfg):
        app = build_app(cfg)

        async def one() -> int:
            async with Daemon(cfg, app.pipeline, app.store, clock=app.clock, metrics=app.metrics,
                              reconciler=app.reconciler) as d:
                results = await d.probe_all()
                await asyncio.to_thread(app.pipeline.ingest)  # what the shop already knows is not asked about
                rec = await d.reconcile()
                report = await d.cycle(wait=True)
                if report is None:  # logged in one line, recorded (paymon status exits 4), announced once
                    return 1
                if rec is not None and report.lost:
                    # A deadline that passed after the round's own report: replayed in this run, not the next.
                    await d.replay_lost(rec)
            await asyncio.to_thread(app.pipeline.prune)
            held = await asyncio.to_thread(ReconcileStore(app.store).held_funds, open_only=True)
            lost = len(report.lost) + (0 if rec is None else len(rec.reported.found))
            counts = ", ".join(f"{k} {v}" for k, v in sorted(probe_summary(results).items())) or "none"
            print(f"probes: {counts}; ingested: {report.ingested.accepted} accepted, "
                  f"{report.ingested.duplicate} duplicate, {report.ingested.rejected} rejected; "
                  f"alerts: {len(report.events)}; weight changes: {len(report.changes)}; "
                  f"reconciled: {0 if rec is None else rec.asked} asked, {0 if rec is None else len(rec.paid)} paid "
                  f"at the channel, {0 if rec is None else len(rec.held)} held, "
                  f"{0 if rec is None else rec.refunded} refunded; replayed: {0 if rec is None else len(rec.replayed)}"
                  f", refused: {0 if rec is None else len(rec.refused)}; lost orders: {lost} new; "
                  f"held funds: {len(held)} open")
            return 0

        try:
            return asyncio.run(one())
        finally:
            app.pipeline.close()
            app.store.close()


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.daemon import Daemon
    from monitor.http import HttpServer

    cfg = load_config(args.config)
    setup_logging(cfg.redactor, verbose=args.verbose)
    with run_lock(cfg):
        clock = SystemClock()
        metrics = Metrics(clock=clock)
        # Bound before anything else is built: a port in use is one line and nothing is left half-started. It
        # serves only once the daemon exists (``started`` holds it and the app by then).
        started: dict[str, Any] = {}
        http = None
        if cfg.monitor.http.enabled:
            http = HttpServer(cfg.monitor.http.host, cfg.monitor.http.port, registry=metrics.registry,
                              health=lambda: started["daemon"].health(), status=lambda: _status(started["app"]))
        try:
            app = build_app(cfg, clock=clock, metrics=metrics)
        except BaseException:
            if http is not None:
                http.stop()
            raise
        started["app"] = app

        async def serve() -> int:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            async with Daemon(cfg, app.pipeline, app.store, clock=app.clock, metrics=app.metrics,
                              reconciler=app.reconciler) as d:
                started["daemon"] = d
                if http is not None:
                    http.start()
                    log.info("http on http://%s:%d (/metrics /healthz /api/status)", http.host, http.port)
                d.start()
                try:
                    await stop.wait()
                finally:
                    log.info("stopping")
                    if http is not None:
                        http.stop()  # before the daemon stops: no view is asked of a stopping daemon
            return 0

        try:
            return asyncio.run(serve())
        finally:
            if http is not None:
                http.stop()
            app.pipeline.close()
            app.store.close()


def _weights(app: App) -> dict[str, int]:
    """The weights the shop uses now, as the routing stage reads them (the configured ones when it cannot)."""
    stage = app.pipeline.routing
    if not stage.sinks:
        return {c.id: c.weight for c in app.cfg.channels}
    try:
        return stage.shop_weights(app.store.routing_states())
    except SinkError:
        return {c.id: c.weight for c in app.cfg.channels}


def _status(app: App) -> dict[str, object]:
    return status_view(app.cfg, app.store, app.clock.now(), _weights(app))


def cmd_status(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    setup_logging(cfg.redactor, verbose=args.verbose)
    app = build_app(cfg)
    try:
        view = _status(app)
    finally:
        app.pipeline.close()
        app.store.close()
    if args.json:
        print(json.dumps(view, ensure_ascii=False, indent=2))
    else:
        print("\n".join(status_lines(view)))
    return status_exit_code(view)


def cmd_ingest(args: argparse.Namespace) -> int:
    from monitor.ingest import JsonlSource
    from monitor.ingest.files import input_problem
    from monitor.ingest.report import rejected_lines
    from monitor.models import IngestResult

    cfg = load_config(args.config)
    setup_logging(cfg.redactor, verbose=args.verbose)
    nginx = next((s for s in cfg.monitor.sources if isinstance(s, NginxSourceConfig)), None)
    if args.source == "nginx" and nginx is None:
        raise UsageError("--source nginx needs an nginx source in monitor.yaml (its callbacks say which URL is "
                         "which channel)")
    for name in args.paths:  # every file is checked before any is read
        problem = input_problem(Path(name))
        if problem is not None:
            raise UsageError(problem)
    defaults = next((s for s in cfg.monitor.sources if isinstance(s, JsonlSourceConfig)), None)
    app = build_app(cfg)
    total = IngestResult()
    tty = sys.stderr.isatty()
    try:
        for name in args.paths:
            path = Path(name).resolve()
            # A backfill has its own checkpoint per file: running it twice never counts an order twice.
            src: JsonlSource
            if args.source == "nginx":
                assert nginx is not None
                src = NginxSource(source_id=f"backfill:{path}", path=path, timezone=args.timezone or nginx.timezone,
                                  store=app.store, clock=app.clock, channels=[c.id for c in cfg.channels],
                                  callbacks=nginx.callbacks, pattern=nginx.pattern, batch_lines=20_000,
                                  complete=True)
            else:
                src = JsonlSource(source_id=f"backfill:{path}", path=path,
                                  timezone=args.timezone or (defaults.timezone if defaults else "UTC"),
                                  store=app.store, clock=app.clock, channels=[c.id for c in cfg.channels],
                                  fields=defaults.fields if defaults else None, batch_lines=20_000,
                                  complete=True)

            def progress(done: int, size: int, label: str = path.name) -> None:
                pct = 100.0 * done / size if size else 100.0
                bar = "#" * int(pct // 4)
                print(f"\r{label}: [{bar:<25}] {pct:5.1f}%", end="" if tty else "\n", file=sys.stderr,
                      flush=True)

            src.on_progress = progress
            try:
                result = src.poll()
            finally:
                src.close()
            if tty:
                print(file=sys.stderr)
            print(f"{path.name}: {result.accepted} accepted, {result.duplicate} duplicate, {result.rejected} rejected")
            if (where := rejected_lines(result)) is not None:
                print(f"{path.name}: {where}")
            total += result
    finally:
        app.pipeline.close()
        app.store.close()
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(total.reasons.items())) or "none"
    print(f"total: {total.accepted} accepted, {total.duplicate} duplicate, {total.rejected} rejected "
          f"(rejected by reason: {reasons})")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from collections import Counter

    from monitor.backtest import backtest
    from monitor.config import parse_duration

    cfg = load_config(args.config)
    setup_logging(cfg.redactor, verbose=args.verbose)
    try:
        since, step = parse_duration(args.since), parse_duration(args.step)
    except ValueError as exc:
        raise UsageError(f"--since/--step: {exc}") from None
    if step.total_seconds() <= 0 or since.total_seconds() <= 0:
        raise UsageError("--since and --step must be positive durations")
    zone = cfg.monitor.display.timezone
    tty = sys.stderr.isatty()
    shown = [-1]  # the last tenth printed when stderr is not a terminal (a log gets ten lines, not a hundred)

    def progress(done: int, total: int, at: datetime) -> None:
        if total < BACKTEST_PROGRESS_STEPS:
            return  # a short range is done before anyone would look
        if not tty:
            if 10 * done // total == shown[0]:
                return
            shown[0] = 10 * done // total
        start, end = ("\r", "" if done < total else "\n") if tty else ("", "\n")
        print(f"{start}backtest: {100 * done // total:3d}% ({done}/{total} steps, at "
              f"{show_time(at, zone)})", end=end, file=sys.stderr, flush=True)

    def started(start: datetime, clamped: bool) -> None:
        if clamped:  # said before the replay runs, not after it
            print(f"backtest: --since clamped to {show_time(start, zone)} (no data before)", file=sys.stderr)

    app = build_app(cfg)
    try:
        replay = backtest(cfg, app.store, _weights(app), since=since, step=step, now=app.clock.now(),
                          on_progress=progress, on_start=started)
    finally:
        app.pipeline.close()
        app.store.close()
    if replay.start is None:
        print("backtest: nothing to replay (the store has no orders and no probe results)", file=sys.stderr)
    moments = replay.moments
    if args.json:
        print(json.dumps([{"at": m.at.isoformat(), "kind": m.kind, "channel": m.channel, "rule": m.rule,
                           "text": m.text} for m in moments], ensure_ascii=False, indent=1))
        return 0
    if replay.start is None:
        return 0
    print(f"times in {zone_label(zone, replay.start)}")
    for m in moments:
        print(f"{show_time(m.at, zone)} {m.text}")
    counts = Counter(m.kind for m in moments)
    print(f"backtest over the last {args.since} every {args.step}: {counts['firing']} firing, "
          f"{counts['resolved']} resolved, {counts['reminder']} reminders, {counts['weight']} weight changes"
          " (nothing was sent or written)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo import run_demo

    return int(run_demo(duration=args.duration, keep=args.keep, language=args.language))


def cmd_sim(args: argparse.Namespace) -> int:
    from monitor.sim.runner import run_sim
    from monitor.sim.scenario import check_channels, load_scenario

    cfg = load_config(args.config)
    setup_logging(cfg.redactor, verbose=args.verbose)
    scenario = load_scenario(args.scenario) if args.scenario else None
    if scenario is not None:
        check_channels(scenario, args.scenario, [c.id for c in cfg.channels])
    return run_sim(cfg, scenario=scenario, port=args.port, rate=args.rate,
                   truth=Path(args.truth) if args.truth else None)


def cmd_weights(args: argparse.Namespace) -> int:
    from monitor.weights_cmd import cmd_weights as run

    return run(args)


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="paymon",
        description="paymon watches payment channels (probes, order log), alerts, and moves routing weights.",
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 usage, config or input error; `paymon status` also 3 (a "
               "channel is down) and 4 (evaluation is failing). Secrets come from ${ENV} only.",
    )
    p.add_argument("--version", action="version", version=f"paymon {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                        help=f"path of monitor.yaml (channels.yaml is found beside it; default {DEFAULT_CONFIG})")
        sp.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        return sp

    add("run", "run the daemon: scheduled probes, ingestion, rules, alerts, weights, HTTP").set_defaults(func=cmd_run)
    add("once", "run one full cycle (every probe once, ingest, evaluate, act) and exit; for cron"
        ).set_defaults(func=cmd_once)
    cc = add("check-config", "validate monitor.yaml and channels.yaml; errors name file, line and field; warns "
             "about configured parts that cannot act")
    cc.add_argument("--scenario", metavar="FILE", action="append",
                    help="also check a simulator scenario file against the channels (repeatable)")
    cc.set_defaults(func=cmd_check_config)
    st = add("status", "table of channels: state, probes, weight and baseline, next restore, success ratio, lost "
             "orders, callback p95, last probe; exit code 3 when a channel is down (a critical alert fires or all "
             "its probes fail), 4 when evaluation is failing")
    st.add_argument("--json", action="store_true", help="print the same JSON as GET /api/status")
    st.set_defaults(func=cmd_status)
    ing = add("ingest", "backfill order events from files into the store, with progress and a summary "
              "(accepted / duplicate / rejected); re-running it never counts an order twice")
    ing.add_argument("paths", nargs="+", metavar="PATH",
                     help="JSONL order-event files (one JSON event per line; see the README)")
    ing.add_argument("--source", choices=["jsonl", "nginx"], default="jsonl", help="file format (default jsonl)")
    ing.add_argument("--timezone", type=argtypes.timezone,
                     help="for timestamps without an offset (default: the jsonl source's, else UTC)")
    ing.set_defaults(func=cmd_ingest)
    bt = add("backtest", "replay stored history through the rules: what would have fired, resolved, and which "
             "weights would have moved (writes nothing)")
    bt.add_argument("--since", default="7d", help="how far back (default 7d)")
    bt.add_argument("--step", default="1m", help="evaluation interval (default 1m)")
    bt.add_argument("--json", action="store_true", help="the timeline as JSON")
    bt.set_defaults(func=cmd_backtest)
    sim = add("sim", "run the simulated gateways and shop traffic for the channels of the config, on their own "
              "(with `paymon run` on the same config: a complete local setup)")
    sim.add_argument("--scenario", metavar="FILE", help="a YAML timeline of fault changes (config/scenarios/*.yaml)")
    sim.add_argument("--port", type=argtypes.port,
                     help="listen port (default: the port of the channels' loopback endpoints)")
    sim.add_argument("--rate", type=argtypes.positive_rate,
                     help="shop orders per second, at most 1000 (default: the scenario's, else 2)")
    sim.add_argument("--truth", metavar="FILE", help="write the ground truth of every order as JSON on exit")
    sim.set_defaults(func=cmd_sim)
    _weights_parser(sub)
    demo = sub.add_parser("demo", help="simulated channels + shop traffic + the daemon; one channel fails and "
                          "recovers, and paymon says what it saw and did",
                          description="Runs everything on loopback with a temporary copy of the configs.")
    demo.add_argument("--duration", type=argtypes.positive_float, default=75.0,
                      help="seconds the scenario runs (default 75)")
    demo.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    demo.add_argument("--language", choices=["en", "zh"], default="en", help="language of the alert lines")
    demo.set_defaults(func=cmd_demo)
    return p


def _weights_parser(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    """``paymon weights show|history|set|restore``, each with the common -c/-v options."""
    help_ = "routing weights: show them and why, the audit trail, set one by hand, restore one to its baseline"
    w = sub.add_parser("weights", help=help_, description=help_)
    actions = w.add_subparsers(dest="action", metavar="ACTION", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = actions.add_parser(name, help=help_, description=help_)
        sp.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                        help=f"path of monitor.yaml (channels.yaml is found beside it; default {DEFAULT_CONFIG})")
        sp.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        sp.set_defaults(func=cmd_weights)
        return sp

    show = add("show", "per channel: the weight the shop reads, paymon's target, the operator's baseline, why it "
               "is lower, the next restore step, operator hold")
    show.add_argument("--json", action="store_true", help="print JSON")
    hist = add("history", "the audit trail of weight changes, newest first: time, channel, old → new, reason, "
               "rule, actor")
    hist.add_argument("--since", help="only this far back (e.g. 24h, 7d)")
    hist.add_argument("--channel", help="only this channel")
    hist.add_argument("--limit", type=int, default=100, help="at most this many changes (default 100)")
    hist.add_argument("--json", action="store_true", help="print JSON")
    st = add("set", "set a channel's weight by hand: it becomes the baseline and is written at once (an operator "
             "hold while a rule still fires on it)")
    st.add_argument("channel", metavar="CHANNEL")
    st.add_argument("weight", metavar="N", type=argtypes.weight, help=f"0 to {argtypes.MAX_WEIGHT}")
    rs = add("restore", "restore a lowered channel to its baseline now, skipping the remaining restore steps")
    rs.add_argument("channel", metavar="CHANNEL")
    rs.add_argument("--force", action="store_true",
                    help="restore even while a rule still fires on it (then an operator hold until it resolves)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        n = len(exc.problems)
        if n == 1:  # one mistake, one line
            print(f"paymon: the configuration is invalid: {exc.problems[0]}", file=sys.stderr)
            return exc.exit_code
        print(f"paymon: the configuration is invalid ({n} problems):", file=sys.stderr)
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return exc.exit_code
    except PaymonError as exc:
        print(f"paymon: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 1
