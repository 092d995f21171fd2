"""Probes: one adapter file per channel ``kind``, registered here with one line each."""

from monitor.probes.alipay import AlipayAdapter
from monitor.probes.base import (
    Adapter,
    AdapterFactory,
    Observation,
    ProbeAdapter,
    ProbeContext,
    ProbeFailure,
    run_probe,
)
from monitor.probes.epay import EpayAdapter
from monitor.probes.epay_v2 import EpayV2Adapter
from monitor.probes.epusdt import EpusdtAdapter
from monitor.probes.http import HttpAdapter
from monitor.probes.paypal import PayPalAdapter
from monitor.probes.stripe import StripeAdapter
from monitor.probes.wxpay import WxpayAdapter

#: Builds a channel's probe adapter, by channel ``kind``.
ADAPTERS: dict[str, AdapterFactory] = {
    "epay": EpayAdapter,
    "epusdt": EpusdtAdapter,
    "stripe": StripeAdapter,
    "paypal": PayPalAdapter,
    "epay_v2": EpayV2Adapter,
    "http": HttpAdapter,
    "alipay_f2f": AlipayAdapter,
    "wxpay_v2": WxpayAdapter,
}

__all__ = ["ADAPTERS", "Adapter", "AdapterFactory", "Observation", "ProbeAdapter", "ProbeContext", "ProbeFailure",
           "run_probe"]
