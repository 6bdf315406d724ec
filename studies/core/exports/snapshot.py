"""One snapshot per export: every table of one archive reads the database as it was at one instant.

Participants keep clicking while a researcher exports. Read under PostgreSQL's default READ
COMMITTED, each query sees what had committed when *it* started, so `events.csv`, `timesteps.csv`
and `masks.jsonl` (three passes over the same rows) disagree by the clicks that landed between
the passes. `export_snapshot()` runs the whole export's reads in one REPEATABLE READ, READ ONLY
transaction: PostgreSQL takes the snapshot at the transaction's first query and every later
query (server-side cursors included) reads that snapshot; it never waits for writers and no
writer waits for it. A high-water mark (max pk per table) would not do: sequence values are
given out at insert, not at commit, so a row with a pk under the mark can commit after it.

Progress: writes inside a READ ONLY transaction are refused, and writes inside any export
transaction would be invisible until it ends, so `job_progress_outside(job)` gives the Job's
progress updates their own database connection (autocommit), seen by the page at once.

SQLite (the embedded demo): no snapshot transaction is opened. A read transaction there would
hold the database's shared lock for the whole export and make every click wait (the demo's
writers take the lock IMMEDIATE, settings.py); the demo's exports are small and short, and a
click landing during one can make its tables differ by that click. Export a study that is
closed (or not running) for tables that agree by construction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, connections, transaction


def snapshot_supported() -> bool:
    """True where `export_snapshot` gives one snapshot (PostgreSQL)."""
    return connection.vendor == "postgresql"


@contextmanager
def export_snapshot() -> Iterator[bool]:
    """Run the body's reads in one REPEATABLE READ READ ONLY transaction on PostgreSQL (yields
    True); elsewhere, or when already inside a transaction whose isolation cannot be set any
    more (a test's atomic block), the body runs as it is (yields False)."""
    if not snapshot_supported() or connection.in_atomic_block:
        yield False
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            # must be the transaction's first statement; the snapshot is taken at the next query
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield True


class OutsideConnection:
    """A second connection to the default database (autocommit), for writes that must not join
    the export's snapshot transaction; closed by `close()`."""

    def __init__(self):
        self.wrapper = connections.create_connection("default")

    def update(self, model, pk: int, **fields) -> None:
        meta = model._meta
        columns, values = [], []
        for name, value in fields.items():
            field = meta.get_field(name)
            columns.append(f"{self.wrapper.ops.quote_name(field.column)} = %s")
            values.append(field.get_db_prep_value(value, self.wrapper))
        table = self.wrapper.ops.quote_name(meta.db_table)
        pk_column = self.wrapper.ops.quote_name(meta.pk.column)
        with self.wrapper.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET {', '.join(columns)} WHERE {pk_column} = %s", [*values, pk]
            )

    def close(self) -> None:
        self.wrapper.close()
