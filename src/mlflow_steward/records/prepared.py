"""Statements compiled once and run on the DBAPI cursor (the governed write's hot path)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


class Prepared:
    """A Core statement that governed writes run on every call, compiled once per dialect and
    run on the connection's DBAPI cursor.

    SQLAlchemy's ``execute`` costs tens of microseconds of Python per statement (cache key,
    parameters, result set-up), more than these small statements take in the database. Only
    statements whose parameters and result columns need no type conversion on the dialect are
    run this way; any other runs through ``conn.execute`` as usual. A database error is raised
    as SQLAlchemy's (``sqlalchemy.exc.DBAPIError`` and its subclasses), as ``execute`` does.

    The statement runs in the connection's current transaction; it does not begin one.
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[Any, tuple[str, tuple[str, ...] | None, dict[str, Any]] | None] = {}

    def _compile(self, dialect: Any) -> tuple[str, tuple[str, ...] | None, dict[str, Any]] | None:
        compiled = self.statement.compile(dialect=dialect)
        try:
            converts = any(
                bind.type._cached_bind_processor(dialect) is not None
                for bind in compiled.binds.values()
            ) or any(
                column.type._cached_result_processor(dialect, None) is not None
                for column in getattr(compiled, "_result_columns", ())
            )
        except Exception:  # a processor that depends on the driver's column type (PG numbers)
            converts = True
        if converts:
            return None
        defaults = compiled.construct_params(_check=False)
        names = tuple(compiled.positiontup) if dialect.positional else None
        return str(compiled), names, {k: v for k, v in defaults.items() if v is not None}

    def _for(self, conn: Connection) -> tuple[str, tuple[str, ...] | None, dict[str, Any]] | None:
        dialect = conn.dialect
        try:
            return self._compiled[dialect]
        except KeyError:
            compiled = self._compiled[dialect] = self._compile(dialect)
            return compiled

    def rows(self, conn: Connection, params: dict[str, Any] | None = None) -> list[tuple]:
        """Run it and return every row (an empty list for a statement without rows)."""
        compiled = self._for(conn)
        if compiled is None:
            result = conn.execute(self.statement, params or {})
            return [tuple(r) for r in result] if result.returns_rows else []
        sql, names, defaults = compiled
        values = {**defaults, **params} if params else defaults
        bound: Any = [values[n] for n in names] if names is not None else values
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql, bound)
            return list(cursor.fetchall()) if cursor.description is not None else []
        except conn.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DBAPIError.instance(
                sql, bound, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from exc
        finally:
            cursor.close()
