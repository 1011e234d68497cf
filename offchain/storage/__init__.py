"""The storage layer shared by the relayer, the node and the verifier.

Modules:
  database.py   the seam: ``Dialect`` (connect, placeholders, transactions, durability, schema introspection) with
                ``SQLiteDialect``; ``Database`` (per-thread readers, ``meta`` binding, numbered ``Migration``s
                recorded in ``schema_migrations``); ``Database.at(location)`` picks the engine; ``StoreMismatch``
  postgres.py   ``PostgresDialect``: PostgreSQL through psycopg 3 (a ``?``-placeholder adapter, rows by name and
                index, SQLite schema spelling translated by ``ddl``); chosen by a ``postgresql://`` store location
  journal.py    ``SqlTxJournal``: the SDK ``TxManager``'s write-ahead journal on a store's ``transactions`` table
                (durable before broadcast, done marks a nonce's records, unconfirmed for ``resume``)
  rows.py       ``typed_row``: a repository's frozen row dataclass from a row read by column name (reads return
                dataclasses, one per row shape, each with a ``from_row`` beside its repository)
  writer.py     ``GroupCommitWriter``: the one writer thread per store (savepoint per job, one commit per group,
                futures resolved after the commit; durable or process-crash-safe commits per job)

Each role's repositories live beside the role (``relayer/store.py``, ``node/store.py``, ``verifier/store.py``) and
are written only against ``Database``/``Dialect``; the relayer's run on SQLite and PostgreSQL, the node's and the
verifier's on SQLite.
"""

from .database import Database, Dialect, Migration, SQLiteDialect, StoreMismatch, add_missing_columns, is_postgres_url
from .rows import typed_row
from .writer import CommitStats, GroupCommitWriter, WriterClosed

__all__ = ["Database", "Dialect", "Migration", "SQLiteDialect", "StoreMismatch", "add_missing_columns",
           "is_postgres_url", "typed_row", "CommitStats", "GroupCommitWriter", "WriterClosed"]
