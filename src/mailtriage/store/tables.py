"""The Core tables behind the models, for the hot path's prepared statements.

Statements built once from these (``insert(table(Article))``, ``select(...)`` with
``bindparam``) skip the ORM's unit of work and most of the statement building per
execution; SQLAlchemy's compiled cache does the rest.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table
from sqlalchemy.orm import DeclarativeBase


def table(model: type[DeclarativeBase]) -> Table:
    """The mapped class's table."""
    return cast(Table, model.__table__)
