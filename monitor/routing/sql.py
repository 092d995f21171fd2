"""The ``sql`` sink kind: dujiaoka's gateway switch (``flavour: dujiaoka``) or a configured UPDATE
(``statement:``), built from the config."""

from __future__ import annotations

from monitor.config import LoadedConfig, SqlSink
from monitor.routing.base import WeightSink
from monitor.routing.dujiaoka import DujiaokaSink
from monitor.routing.statement import StatementSink
from monitor.store import Store

__all__ = ["sql_sink"]


def sql_sink(sink: SqlSink, cfg: LoadedConfig, store: Store) -> WeightSink:
    """The sink ``sink`` describes. A dujiaoka gateway waits for its channel's callback window: the channel's
    ``pay_timeout`` (else the default) plus ``defaults.callback_deadline``."""
    if sink.statement is not None:
        return StatementSink(sink.url.reveal(), sink.statement)
    d = cfg.monitor.defaults
    windows = {c.id: (c.pay_timeout or d.pay_timeout) + d.callback_deadline for c in cfg.channels}
    return DujiaokaSink(sink.url.reveal(), sink.channels, store, windows=windows, table=sink.table,
                        key_column=sink.key_column, open_column=sink.open_column)
