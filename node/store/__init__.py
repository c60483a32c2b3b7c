"""Node storage: SQLAlchemy models, the repository and Alembic migrations.

``Store.open(url)`` is the entry point; SQLite (WAL) is the embedded default and
PostgreSQL is used through a ``postgresql+psycopg://`` URL.
"""

from node.store.misbehaviour import MISBEHAVIOUR_PER_PEER, MisbehaviourCount, MisbehaviourRecord
from node.store.store import HOLD_PER_LAB, HOLD_TOTAL, MAX_BATCH, IngestOutcome, Store

__all__ = [
    "HOLD_PER_LAB",
    "HOLD_TOTAL",
    "MAX_BATCH",
    "MISBEHAVIOUR_PER_PEER",
    "IngestOutcome",
    "MisbehaviourCount",
    "MisbehaviourRecord",
    "Store",
]
