"""The verifier daemon (``opg verifier run``): samples the relayer's receipts, fetches their payloads from the nodes,
re-executes them with the same backend, signs verdicts and hands them to the relayer; follows on-chain flags and
payers' disputes so a stake quorum can form; heartbeats every epoch. See docs/verifier.md.

  config    VerifierSettings (OPG_VERIFIER_*, section [verifier])
  sampling  Sampler: keccak(key-derived secret || receipt id) < rate * 2**256
  judge     judge(receipt, payload, backend): the decision rules
  payloads  PayloadClient (the node's challenge protocol), receipt parsing, dispute checks
  store     VerifierStore (offchain.storage: cursor, receipts seen, flags, checks and verdicts, tx journal)
  service   Verifier: the feed, chain and work threads
  api       POST /disputes, GET /checks/{id}, /healthz, /metrics
  cli       opg verifier run
"""
