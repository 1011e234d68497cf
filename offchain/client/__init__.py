"""The payer side of OPG Settlement: wallet operations, channel state, vouchers, receipt checks, paying httpx
transports and the x402 ``opg-credit`` scheme client. See docs/client.md.

  OpgClient                  wallet: deposit, gasless deposit, balance, withdraw (thaw), session keys; .payer()
  Payer                      one payer's signer, local state and policy: prepares payments, checks receipts
  payment_http_client        httpx.Client paying 402s (for openai.OpenAI(http_client=...))
  async_payment_http_client  httpx.AsyncClient paying 402s (for openai.AsyncOpenAI(http_client=...))
  PayingTransport, AsyncPayingTransport, PaymentTicket
  (offchain.schemes.credit.client.OpgCreditClient: the x402 SchemeNetworkClient for x402Client.register)
  ClientState                the state directory; load_request(receipt_id) for disputes
  PaymentRefused, Overcharged, ChannelConflict, PaymentOutcome
  parse_opg, format_opg
"""

from ..amounts import format_opg, parse_opg
from .payer import ChannelConflict, Overcharged, Payer, PaymentOutcome, PaymentRefused, Reservation
from .state import ChannelState, ClientState
from .transport import (
    AsyncPayingTransport,
    PayingTransport,
    PaymentTicket,
    async_payment_http_client,
    payment_http_client,
)
from .wallet import Balance, OpgClient, WalletError, Withdrawal

__all__ = [
    "AsyncPayingTransport",
    "Balance",
    "ChannelConflict",
    "ChannelState",
    "ClientState",
    "OpgClient",
    "Overcharged",
    "Payer",
    "PayingTransport",
    "PaymentOutcome",
    "PaymentRefused",
    "PaymentTicket",
    "Reservation",
    "WalletError",
    "Withdrawal",
    "async_payment_http_client",
    "format_opg",
    "parse_opg",
    "payment_http_client",
]
