"""The protocol SDK: one of each concept every role (relayer, node, verifier, client, operator, seasons, web) uses.

- ``connect``: ``connect(settings) -> Connection``, the one start-up bootstrap (RPC, chain id, key, deployment, code
  check, contracts, EIP-712 domains, clock); ``open_deployment`` is its keyless part.
- ``contracts``: typed web3 wrappers of OPG, CreditEscrow, NodeStaking, Evidence, RewardDistributor and
  SeasonDistributor; reads return frozen dataclasses (NodeRecord, Withdrawal, Channel, SessionKey, Dispute) and
  ``BatchSettled`` is the one decoder of the packed settlement log.
- ``tx``: ``TxManager``, the one transaction manager (nonces, EIP-1559 fees, write-ahead journal, replacement,
  receipt wait, retries), with ``TxJournal`` (the protocol a caller's store implements) and ``FileJournal``.
- ``clock``: ``ProtocolClock``, the one protocol time (max of wall and chain clock; receipt dating).
- ``wire``: the one JSON form of signed receipts, vouchers and authorisations, and ``SignatureChecker`` (precomputed
  domain separator + coincurve recovery).
- ``constants``: protocol constants mirrored from the contracts (checked against them in ``tests/sdk``).
- ``reads``: ``RawReader``, raw ``eth_call`` JSON-RPC batches for request paths (the relayer's ``/verify``, the
  node's exposure check and chain clock) without web3.py's per-call cost.
- ``relayer_client``: ``RelayerClient``, the one typed client of the relayer's HTTP API.

The signed messages themselves (EIP-712 types, digests, signing) are ``offchain.messages``.
"""
