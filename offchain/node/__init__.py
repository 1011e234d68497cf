"""The OPG inference node: an OpenAI-compatible chat API behind x402 v2 (``opg-credit`` vouchers and ``exact``
EIP-3009 transfers), a signed Receipt for every paid answer, stored durably before it is released and handed to the
relayer through a crash-proof outbox, and payloads released only to staked verifiers and the payer.

Modules, by what they hold:
  config.py     NodeSettings (OPG_NODE_*, section [node]), OPG decimal prices, the pricing file, backend specs
  catalog.py    the models served (backend + price table) and the quote of a request
  openai.py     OpenAI's request body and answer / chunk shapes
  x402.py       the PAYMENT-REQUIRED challenge (the accepts of every registered scheme), PAYMENT-SIGNATURE decoding
  channels.py   per-payer channel state (cumulative charge, caps in flight, best voucher) under per-channel locks
  chainview.py  cached chain reads (spent, session keys, credits, registration, verifiers) and the chain clock
  payments.py   the scheme-independent payment steps; each scheme's node side is in offchain/schemes/<scheme>/server.py
  engine.py     running a request on its backend, to completion or streamed with delivery accounting
  store.py      receipts + payloads + outbox state, best vouchers, exact claims, tx journal (offchain.storage)
  outbox.py     the worker (offchain.daemon.worker) that hands stored receipts to the relayer, byte for byte
  events.py     NodeEvents: a receipt's steps (stored, answered, handed over), where fault plug-ins subscribe
  payloads.py   challenge nonces and payload release to verifiers and payers
  metrics.py    Prometheus metrics
  routes/       one APIRouter per resource (chat, models, payloads)
  service.py    the Node: the composition root wiring the above; supervises the outbox worker (backoff, health)
  api.py        the FastAPI application
  cli.py        ``opg node run|settle`` (click, options from NodeSettings; see offchain/clikit.py)

See docs/node.md.
"""
