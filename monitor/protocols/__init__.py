"""Wire protocols of the payment channels: signing rules, codes and formats, free of I/O.

One module per protocol family. The simulator (``monitor.sim``) and the probes both import from here, so the
gateway side and the client side of a protocol can never drift apart.
"""
