"""The storage layer shared by the relayer, the node and the verifier.

Modules:
  database.py   the seam: ``Dialect`` (connect, placeholders, transactions, durability, schema introspection, read
                connections, the migrations' lock, notify) with ``SQLiteDialect``; ``Database`` (reads retried once
                on a lost connection, ``meta`` binding, numbered ``Migration``s recorded in ``schema_migrations``,
                applied once however many processes open the store at once, ``notify``); ``Database.at(location)``
                picks the engine; ``StoreMismatch``
  postgres.py   ``PostgresDialect``: PostgreSQL through psycopg 3 (a ``?``-placeholder adapter, rows by name and
                index, SQLite schema spelling translated by ``ddl``, pooled readers, advisory-lock keys,
                ``commit_ordered`` for a feed's order column); chosen by a ``postgresql://`` store location
  notify.py     ``Listener``: a supervised worker on its own connection that hears ``Database.notify`` (LISTEN) and
                runs a catch-up on every (re)connect and every poll; on SQLite it only polls
  journal.py    ``SqlTxJournal``: the SDK ``TxManager``'s write-ahead journal on a store's ``transactions`` table
                (durable before broadcast, done marks a nonce's records, unconfirmed for ``resume``)
  rows.py       ``typed_row``: a repository's frozen row dataclass from a row read by column name (reads return
                dataclasses, one per row shape, each with a ``from_row`` beside its repository)
  writer.py     ``GroupCommitWriter``: the one writer thread per store (savepoint per job, one commit per group,
                futures resolved after the commit; durable or process-crash-safe commits per job)

Each role's repositories live beside the role (``relayer/store.py``, ``node/store.py``, ``verifier/store.py``) and
are written only against ``Database``/``Dialect``; the relayer's run on SQLite and PostgreSQL (several processes on
one database), the node's and the verifier's on SQLite.
"""

from .database import (
    Database,
    Dialect,
    Migration,
    SQLiteDialect,
    StoreMismatch,
    add_missing_columns,
    close_quietly,
    is_postgres_url,
)
from .notify import Listener
from .rows import typed_row
from .writer import CommitStats, GroupCommitWriter, WriterClosed

__all__ = ["Database", "Dialect", "Migration", "SQLiteDialect", "StoreMismatch", "add_missing_columns",
           "close_quietly", "is_postgres_url", "Listener", "typed_row", "CommitStats", "GroupCommitWriter",
           "WriterClosed"]
