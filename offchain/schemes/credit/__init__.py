"""The ``opg-credit`` scheme: a cumulative Voucher on the CreditEscrow, settled later in batches.

  payload.py  CreditPayload (voucher + signature [+ receipt on /settle]): the one payload model
  client.py   the payer's side: sign the voucher a 402 asks for (and the x402 SchemeNetworkClient for stock clients)
  server.py   the node's side: the offer, the admission (local checks + the relayer's /verify), the charge (receipt)
"""

from .payload import SCHEME, CreditPayload, VoucherFields

__all__ = ["SCHEME", "CreditPayload", "VoucherFields"]
