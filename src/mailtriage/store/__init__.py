"""SQLAlchemy tables, sessions and the one-transaction apply.

Importing the package registers every table on ``Base.metadata`` (the migration check
compares that metadata with the Alembic scripts).
"""

from mailtriage.store import intake_models, models, outbound_models

__all__ = ["intake_models", "models", "outbound_models"]
