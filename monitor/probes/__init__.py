"""Probes: one adapter file per channel ``kind``, registered here with one line each."""

from monitor.probes.base import Adapter, Observation, ProbeContext, ProbeFailure, run_probe
from monitor.probes.epay import EpayAdapter

#: Adapter classes by channel ``kind``.
ADAPTERS: dict[str, type] = {
    "epay": EpayAdapter,
}

__all__ = ["ADAPTERS", "Adapter", "Observation", "ProbeContext", "ProbeFailure", "run_probe"]
