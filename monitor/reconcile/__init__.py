"""Reconciliation: one querier file per channel ``kind``, registered here with one line each.

A querier asks its channel what became of orders the shop still thinks unpaid (:class:`Querier`); the ones whose
protocol lets the merchant key sign notifies (epay V1, WeChat Pay v2) can also replay a lost notify
(:class:`Replayer`). Constructors take the channel's ``ChannelConfig`` and raise ``ValueError`` for missing
credentials or endpoint.
"""

from monitor.reconcile.alipay import AlipayQuerier
from monitor.reconcile.base import ORDER_STATES, ChannelOrder, Querier, QuerierFactory, Replayer, ReplayResult
from monitor.reconcile.epay import EpayQuerier
from monitor.reconcile.epay_v2 import EpayV2Querier
from monitor.reconcile.wxpay import WxpayQuerier

#: Builds a channel's querier, by channel ``kind``.
QUERIERS: dict[str, QuerierFactory] = {
    "epay": EpayQuerier,
    "epay_v2": EpayV2Querier,
    "alipay_f2f": AlipayQuerier,
    "wxpay_v2": WxpayQuerier,
}

__all__ = ["ORDER_STATES", "QUERIERS", "ChannelOrder", "Querier", "QuerierFactory", "ReplayResult", "Replayer"]
