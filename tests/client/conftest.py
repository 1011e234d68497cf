"""Client fixtures: a private anvil + deployment and a real relayer subprocess per test module (``devnet`` and
``relayer`` from ``offchain.devkit.fixtures``, module fixtures with ``chain_isolation=False``)."""

from offchain.devkit.fixtures import devnet, relayer  # noqa: F401
