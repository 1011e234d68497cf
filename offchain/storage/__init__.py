"""The storage layer shared by the relayer, the node and the verifier.

Modules:
  database.py   the seam: ``Dialect`` (connect, placeholders, transactions, durability, schema introspection) with
                ``SQLiteDialect``; ``Database`` (per-thread readers, ``meta`` binding, numbered ``Migration``s
                recorded in ``schema_migrations``); ``StoreMismatch``
  journal.py    ``SqlTxJournal``: the SDK ``TxManager``'s write-ahead journal on a store's ``transactions`` table
                (durable before broadcast, done marks a nonce's records, unconfirmed for ``resume``)
  writer.py     ``GroupCommitWriter``: the one writer thread per store (savepoint per job, one commit per group,
                futures resolved after the commit; durable or process-crash-safe commits per job)

Each role's repositories live beside the role (``relayer/store.py``, ``node/store.py``, ``verifier/store.py``) and
are written only against ``Database``/``Dialect``, so a PostgreSQL dialect can follow behind them.
"""

from .database import Database, Dialect, Migration, SQLiteDialect, StoreMismatch, add_missing_columns
from .writer import CommitStats, GroupCommitWriter, WriterClosed

__all__ = ["Database", "Dialect", "Migration", "SQLiteDialect", "StoreMismatch", "add_missing_columns",
           "CommitStats", "GroupCommitWriter", "WriterClosed"]
