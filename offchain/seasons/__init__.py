"""Seasons: rewards to payers from the protocol fee, by a Merkle root on the SeasonDistributor. See docs/seasons.md.

- ``usage``: the pure usage function (settled charges, fees, evidence) over a season's logs and the season table.
- ``merkle``: the distributor's Merkle tree (double-hashed ``(account, cumulative)`` leaves, sorted pairs).
- ``ops``: ``Seasons``: deploy the distributor, build/propose/accept a root, claim, status, standing.
- ``standing``: a payer's season standing for the client (incremental, never raises).
- ``cli``: ``opg season``.
"""
