"""Gateway clients: one module per channel ``kind`` that speaks that gateway's wire protocol.

A client holds what the probe adapter (:mod:`monitor.probes`) and the order querier (:mod:`monitor.reconcile`) of
a kind share: its credentials (checked when it is built, a ``ValueError`` naming what is missing or unreadable),
the signed call, the verification of the gateway's answer and the classification of every fault into a probe
outcome (:class:`~monitor.clients.base.ProbeFailure`). The pure protocol rules (signing, formats) stay in
:mod:`monitor.protocols`, which the simulator shares and which does no I/O; this package is where they meet the
network (:mod:`monitor.clients.base`).
"""
