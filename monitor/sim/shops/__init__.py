"""The shop side of each protocol (open an order at the gateway, take its notifies): one file per ``kind``,
registered here with one line each."""

from monitor.sim.shops.alipay import AlipayShop
from monitor.sim.shops.epay import EpayShop
from monitor.sim.shops.epusdt import EpusdtShop
from monitor.sim.shops.paypal import PayPalShop
from monitor.sim.shops.stripe import StripeShop
from monitor.sim.shops.wxpay import WxpayShop

SHOP_ADAPTERS: dict[str, type] = {
    "epay": EpayShop,
    "alipay_f2f": AlipayShop,
    "wxpay_v2": WxpayShop,
    "epusdt": EpusdtShop,
    "stripe": StripeShop,
    "paypal": PayPalShop,
}

__all__ = ["SHOP_ADAPTERS"]
