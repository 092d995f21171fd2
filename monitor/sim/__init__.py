"""The channel simulator: gateways speaking the real wire protocols on loopback, fault knobs, and shop
traffic.

``SimServer`` serves simulated epay V1 channels over real HTTP; ``Faults`` are their live knobs; ``Shop`` and
``ShopTraffic`` create orders through them and write the JSONL order log paymon ingests.
"""

from monitor.sim.epay import EpayChannel, EpayGateway, NotifyAttempt, OrderTruth
from monitor.sim.faults import Faults
from monitor.sim.server import AppServer, SimServer
from monitor.sim.shop import EventLog, Shop, ShopChannel, ShopOrder, ShopTraffic

__all__ = [
    "AppServer",
    "EpayChannel",
    "EpayGateway",
    "EventLog",
    "Faults",
    "NotifyAttempt",
    "OrderTruth",
    "Shop",
    "ShopChannel",
    "ShopOrder",
    "ShopTraffic",
    "SimServer",
]
