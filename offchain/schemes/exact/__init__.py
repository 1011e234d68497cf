"""The ``exact`` scheme on EVM (x402's own): an EIP-3009 transfer of the quote in full, one per request.

  payload.py  ExactPayload (authorization + signature): the one payload model
  client.py   the payer's side: sign the EIP-3009 authorisation with the owner's key
  server.py   the node's side: the offer, the admission (the relayer's /verify), the charge (the relayer's /settle)
"""

from .payload import SCHEME, Eip3009Authorization, ExactPayload

__all__ = ["SCHEME", "Eip3009Authorization", "ExactPayload"]
