"""``paymon weights show|history|set|restore``: the operator's view of routing weights and hand control over them.

``set`` and ``restore`` hold the store's routing lock (the one each cycle's routing stage holds), record the new row
and its audited change in the store first, and then write the sink through the routing stage's own write path
(:meth:`~monitor.routing.stage.RoutingStage.apply`). A running daemon therefore reads the operator's weight as
paymon's own applied weight, never as a hand edit of the file; and if the write fails, or the command dies before
it, the next cycle writes what the store says.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable

from monitor.cli import App, build_app, setup_logging
from monitor.config import LoadedConfig, load_config, parse_duration
from monitor.errors import SinkError, UsageError
from monitor.locks import routing_lock
from monitor.routing.operator import (
    Edit,
    check_channel,
    history_lines,
    history_view,
    holders,
    restore_weight,
    set_weight,
    show_lines,
    show_view,
    unserved_methods,
)
from monitor.routing.plan import restore_policy, weight_wishes
from monitor.routing.policy import ChannelRouting
from monitor.snapshot import in_maintenance
from monitor.timefmt import zone_label

__all__ = ["cli_actor", "cmd_weights", "run_weights"]


def cli_actor() -> str:
    """``cli:<user>``: who changed a weight from the command line, as the audit records it."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no user name in the environment and none in the password database
        return "cli:unknown"


def cmd_weights(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    setup_logging(cfg.redactor, verbose=args.verbose)
    if getattr(args, "channel", None) is not None:  # a typo is one line, before anything is opened
        check_channel(args.channel, [c.id for c in cfg.channels])
    app = build_app(cfg)
    try:
        return run_weights(app, args)
    finally:
        app.pipeline.close()
        app.store.close()


def run_weights(app: App, args: argparse.Namespace) -> int:
    """Run one ``weights`` action on an app already built (its config, store, sink and clock)."""
    action: Callable[[LoadedConfig, App, argparse.Namespace], int] = {
        "show": _show, "history": _history, "set": _set, "restore": _restore}[args.action]
    return action(app.cfg, app, args)


def _show(cfg: LoadedConfig, app: App, args: argparse.Namespace) -> int:
    now = app.clock.now()
    rows = app.store.routing_states()
    weights = {c.id: c.weight for c in cfg.channels}
    if app.pipeline.routing.sinks:
        try:
            weights = app.pipeline.routing.shop_weights(rows)
        except SinkError as exc:
            print(f"paymon: cannot read the weights the shop reads ({exc}); showing channels.yaml's",
                  file=sys.stderr)
    view = show_view(cfg.channels, rows, weights,
                     weight_wishes(cfg, app.store.alert_states(), in_maintenance(cfg, now)), restore_policy(cfg))
    if args.json:
        print(json.dumps(view, ensure_ascii=False, indent=2))
    else:
        zone = cfg.monitor.display.timezone
        print(f"routing mode {cfg.monitor.routing.mode}; times in {zone_label(zone, now)}")
        print("\n".join(show_lines(view, zone)))
    return 0


def _history(cfg: LoadedConfig, app: App, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    since = None
    if args.since is not None:
        try:
            since = app.clock.now() - parse_duration(args.since)
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
    changes = app.store.weight_history(channel=args.channel, since=since, limit=args.limit)
    if args.json:
        print(json.dumps(history_view(changes), ensure_ascii=False, indent=2))
        return 0
    if not changes:
        print("no weight changes recorded" + (f" for {args.channel}" if args.channel else "")
              + (f" in the last {args.since}" if args.since else ""))
        return 0
    zone = cfg.monitor.display.timezone
    print(f"times in {zone_label(zone, app.clock.now())}, newest first")
    print("\n".join(history_lines(changes, zone)))
    return 0


def _set(cfg: LoadedConfig, app: App, args: argparse.Namespace) -> int:
    return _change(cfg, app, args, lambda ch, row, holding, now: set_weight(
        ch, row, args.weight, holding=holding, now=now, actor=cli_actor()))


def _restore(cfg: LoadedConfig, app: App, args: argparse.Namespace) -> int:
    return _change(cfg, app, args, lambda ch, row, holding, now: restore_weight(
        ch, row, holding=holding, force=args.force, now=now, actor=cli_actor()))


def _change(cfg: LoadedConfig, app: App, args: argparse.Namespace, edit: Callable[..., Edit]) -> int:
    """Decide the operator's edit from the current rows, sink and firing rules, record it, then write it."""
    if not app.pipeline.routing.sinks:
        raise UsageError("routing.mode is off in monitor.yaml: paymon writes no weights; set routing.mode to "
                         "auto (or suggest) to change them with paymon")
    channel = args.channel
    with routing_lock(cfg.monitor.storage.url):
        now = app.clock.now()
        try:
            weights = app.pipeline.routing.shop_weights(app.store.routing_states())
        except SinkError as exc:
            print(f"paymon: nothing changed: cannot read the weights the shop reads: {exc}", file=sys.stderr)
            return 1
        if channel not in weights:
            raise UsageError(f"{channel}: the weight sink has no weight for this channel; nothing changed")
        cfg_ch = next(c for c in cfg.channels if c.id == channel)
        wishes = weight_wishes(cfg, app.store.alert_states(), in_maintenance(cfg, now))
        result = edit(ChannelRouting(channel, weights[channel], tuple(cfg_ch.methods)),
                      app.store.routing_states().get(channel), holders(wishes, channel), now)
        if result.changes:
            app.store.save_routing([result.row], result.changes, app.pipeline.routing.notify)
        written = app.pipeline.routing.apply(now)
    print(result.message)
    if isinstance(getattr(args, "weight", None), int):
        short = unserved_methods(channel, args.weight, cfg.channels, weights,
                                 cfg.monitor.routing.min_active_per_method)
        if short:
            print(f"warning: {', '.join(short)} now has fewer than routing.min_active_per_method "
                  f"({cfg.monitor.routing.min_active_per_method}) channels with weight > 0", file=sys.stderr)
    if written.held:
        print(f"paymon: recorded, but not written yet ({'; '.join(written.held)}); the next paymon cycle writes it",
              file=sys.stderr)
        return 1
    return 0
