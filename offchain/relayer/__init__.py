"""The OPG settlement relayer: an x402-style facilitator for OPG credits.

It verifies vouchers and EIP-3009 authorisations (``POST /verify``), takes nodes' signed receipts and stores them
durably before acknowledging them (``POST /settle``), settles them on-chain in batches through
``CreditEscrow.settle_batch``, reconciles in-flight batches with the chain after a restart, and submits slashing
evidence (equivocation it detects itself, fraud once a verifier quorum is reached, lazy verifiers afterwards).

Modules, by what they hold:
  config.py     settings (file < environment < flags) and the configuration error
  signer.py     the relayer's transaction key (keystore or anvil development key)
  models.py     pydantic models of the HTTP API's bodies and answers
  errors.py     the API's 4xx error type
  store.py      repositories (receipts, channels, batches, journal, slashes/verdicts, exact payments), numbered
                migrations, the units of work that apply rules.py (on offchain.storage's writer)
  rules.py      settlement rules as plain functions: a receipt's effect on its channel, a claim outcome's
                effect on its receipts and the channel's settled amount
  ledger.py     the in-memory view of channels (charged, settled, best voucher) kept by the writer
  credit.py     the ``opg-credit`` scheme: voucher verification and receipt validation
  exact.py      the ``exact`` scheme: EIP-3009 verification and transferWithAuthorization settlement
  txsender.py   nonces, EIP-1559 fees, retries, write-ahead transaction records
  batcher.py    batch building, simulation, sending, confirmation, reconciliation
  slasher.py    equivocation, fraud and lazy-verifier slashing
  metrics.py    Prometheus text exposition
  service.py    the Relayer object wiring the above and its chain worker thread
  api.py        the FastAPI application
  cli.py        ``opg relayer run``
"""
