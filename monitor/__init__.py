"""paymon: a payment-channel health monitor for automated virtual-goods shops.

The package is named ``monitor``; the distribution and console script are ``paymon``.
"""

__version__ = "0.1.0"
