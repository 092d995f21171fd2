"""The shop side of each protocol (open an order at the gateway, take its notifies): one file per ``kind``,
registered here with one line each."""

from monitor.sim.shops.epay import EpayShop

SHOP_ADAPTERS: dict[str, type] = {
    "epay": EpayShop,
}

__all__ = ["SHOP_ADAPTERS"]
