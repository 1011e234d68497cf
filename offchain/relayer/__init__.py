"""The OPG settlement relayer: an x402-style facilitator for OPG credits.

It verifies vouchers and EIP-3009 authorisations (``POST /verify``), takes nodes' signed receipts and stores them
durably before acknowledging them (``POST /settle``), settles them on-chain in batches through
``CreditEscrow.settle_batch``, reconciles in-flight batches with the chain after a restart, and submits slashing
evidence (equivocation it detects itself, fraud once a verifier quorum is reached, lazy verifiers afterwards).

Modules, by what they hold:
  service.py      the composition root: Relayer(settings) builds every component with what it uses, start/stop
  config.py       settings (file < environment < flags) and the configuration error
  signer.py       the relayer's transaction key (keystore or anvil development key)
  lease.py        the sending lease: one of several relayer processes on a store sends (epoch, fence, takeover)
  rpc.py          ChainFacts (this deployment, read once) and Rpc (a web3 connection per thread, retries)
  events.py       the event hub through which components learn what another saw (no reaching into siblings)
  models.py       pydantic models of the HTTP API's bodies and answers
  store.py        the database: repositories, migrations, units of work (storage owner's)
  rules.py        settlement rules as plain functions (storage owner's)
  ledger.py       the in-memory view of channels (charged, settled, best voucher) and per-node running totals
  proposals.py    reservations: /verify promises and others' live proposals, what a node's capacity must cover
  receipts.py     receipt checks without chain reads (typed slashable refusals) and the validation processes
  credit.py       the opg-credit facilitator: voucher verification, receipt validation and intake
  exact.py        the exact facilitator: EIP-3009 verification and transferWithAuthorization settlement
  facilitators.py the registered x402 facilitators /supported, /verify and /settle iterate
  intake.py       POST /settle's body to its handler (x402 settle, bulk, single receipt)
  policy.py       the batch policy (when to cut a batch, when to give a reverting batch up): pure, no I/O
  batcher.py      batch building, simulation, sending, confirmation, reconciliation (a supervised worker)
  watch.py        every process's scan of withdrawal requests and proposals (its /verify counts them)
  slasher.py      equivocation, fraud, lazy-verifier ... slashing (a supervised worker)
  metrics.py      Prometheus metrics
  deps.py         the HTTP layer's FastAPI dependencies (components from app.state)
  routes/         the routers, one per resource (x402, receipts, batches, slashing, payers, feed, deposits)
  deposits.py     gasless deposits (POST /deposits's checks and transaction), a component of the deposits route
  handover.py     a follower's exact payments and deposits handed to the lease holder through the store (NOTIFY)
  api.py          the app on the daemons' factory, the /settle fast lane, the ASGI stack
  keccak.py       the fast keccak backend
  cli.py          ``opg relayer run``
"""
