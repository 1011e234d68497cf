"""The verifier daemon (``opg verifier run``): samples the relayer's receipts, fetches their payloads from the nodes,
re-executes them with the same backend, signs verdicts and hands them to the relayer; follows on-chain flags and
payers' disputes so a stake quorum can form; heartbeats every epoch. See docs/verifier.md.

  config     VerifierSettings (OPG_VERIFIER_*, section [verifier])
  service    Verifier: the composition root (connect, build the components, supervise the four workers, /healthz)
  feed       FeedReader (worker "feed"): the relayer's receipt feed -> sampled checks
  intake     Intake (which receipts are checked: the draw, served models, accused receipts), Drift (binomial test)
  sampling   Sampler: keccak(key-derived secret || receipt id) < rate * 2**256
  checks     Checker (fetch payload, ask the judge, sign Verdict or PayloadWithheld), CheckDispatcher (worker "work")
  judge      judge(receipt, payload, backend): the decision rules; ReceiptJudge protocol, Reexecution (the default)
  payloads   PayloadClient (the node's challenge protocol), receipt parsing, dispute checks
  flags      FlagWatcher (Flagged events in, this verifier's flags out), EvidenceSharer (payloads to other verifiers)
  heartbeat  Heartbeat (once per epoch), ChainWorker (worker "chain": flags + heartbeat, the one sender)
  outbox     VerdictOutbox (worker "outbox"): verdicts and withholding reports to the relayer
  events     VerifierEvents: a verdict's steps (signed, posted, reported, flagged, tx recorded) for fault plug-ins
  onchain    ChainAccess: per-thread contracts, endpoint cache, transactions through the SDK's TxManager
  metrics    Metrics (Prometheus), Trouble (last error, relayer reachability)
  store      VerifierStore (offchain.storage: cursor, receipts seen, flags, checks and verdicts, tx journal)
  api        POST /disputes, GET /checks/{id}, GET /drift, /healthz, /metrics
  cli        opg verifier run
"""
