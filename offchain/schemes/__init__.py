"""x402 payment schemes as plug-ins: one package per scheme, found through one registry.

  registry.py  SchemeRegistry / ``registry``: scheme name -> payload model + client, server, facilitator classes
  credit/      ``opg-credit``: payload.py (CreditPayload), client.py (payer side), server.py (node side)
  exact/       ``exact`` (EIP-3009): payload.py (ExactPayload), client.py (payer side), server.py (node side)

The facilitators (the relayer's ``/verify`` and ``/settle``) live in ``offchain/relayer`` and register here.
Importing this package declares both built-in schemes and their payload models.
"""

from . import credit, exact
from .credit import CreditPayload
from .exact import ExactPayload
from .registry import SchemeEntry, SchemeRegistry, UnknownScheme, registry

SCHEME_CREDIT = credit.SCHEME
SCHEME_EXACT = exact.SCHEME

__all__ = ["SCHEME_CREDIT", "SCHEME_EXACT", "CreditPayload", "ExactPayload", "SchemeEntry", "SchemeRegistry",
           "UnknownScheme", "registry"]
