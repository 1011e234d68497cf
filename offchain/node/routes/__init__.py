"""The node's HTTP resources, one FastAPI ``APIRouter`` each, built from the parts they use:

  chat.py      POST /v1/chat/completions (x402 v2: opg-credit and exact; JSON or SSE)
  models.py    GET /v1/models, GET /v1/models/{id}
  payloads.py  GET /v1/payloads/challenge, POST /v1/payloads/{receipt_id}

``/healthz`` and ``/metrics`` come from the daemon skeleton (``offchain.daemon.app.operations_router``).
"""
