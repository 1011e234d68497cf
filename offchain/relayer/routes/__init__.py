"""The relayer's HTTP routers, one per resource; each takes its components through ``relayer.deps``.

  x402.py      GET /supported, POST /verify, POST /settle (documented here, served by api.FastLane)
  receipts.py  GET /receipts/{id}, GET /channels/{payer}/{node}
  batches.py   GET /batches, GET /batches/{id}
  slashing.py  POST /verdicts, GET /slashes
  payers.py    GET /payers/{payer}/pending
  feed.py      GET /feed/receipts, POST /reports/withholding, GET /nodes/{address}
  deposits.py  POST /deposits (the work: relayer.deposits.Deposits)
"""
