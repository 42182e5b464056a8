"""Hot-path statements: compiled once per dialect by SQLAlchemy, run on the DBAPI cursor of a connection.

SQLAlchemy's execution of a Core statement (cache-key lookup, an execution context, parameter and result
processing, events) cost about 40-50 µs per statement on the protocol push path, several times the work
of SQLite itself. :class:`Prepared` keeps what SQLAlchemy compiled for each dialect (the SQL text, the
order of its parameters, each parameter's bind processor from its column type) and sends the statement
straight to the driver, inside the caller's transaction on the caller's SQLAlchemy connection, so
``BEGIN`` / ``COMMIT`` / rollback and the connection pool stay SQLAlchemy's.

Only for statements whose parameters are all given (a column default is not applied here: a statement
that would need one is refused when it is compiled); a selected value goes through its column type's
result processing, as SQLAlchemy's rows do (a datetime SQLite stores as text comes back a datetime). A
driver error is raised as SQLAlchemy's own exception
(``IntegrityError`` for a clashing key), as ``Connection.execute`` would raise it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert


def core(s: Session | Connection) -> Connection:
    """The Core connection of a transaction given as an ORM session or as the connection itself."""
    return s if isinstance(s, Connection) else s.connection()


@dataclass(frozen=True)
class _Form:
    sql: str
    positional: bool
    order: tuple[str, ...]
    """The parameters' names in the order of the SQL text (a name may repeat)."""
    processors: Mapping[str, Callable[[Any], Any] | None]
    """The bind processor of each parameter the caller gives (from its column type), or None."""
    fixed: Mapping[str, Any]
    """The values of the statement's own parameters (a LIMIT), already processed."""
    results: tuple[Callable[[Any], Any] | None, ...]
    """The result processor of each selected column (from its type), or None."""


class Prepared:
    """A Core statement run on the driver; see the module documentation for what it takes."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._forms: dict[tuple[str, str, frozenset[str]], _Form] = {}
        self._lock = threading.Lock()

    def _form(self, dialect: Dialect, keys: frozenset[str]) -> _Form:
        slot = (dialect.name, dialect.driver, keys)
        form = self._forms.get(slot)
        if form is not None:
            return form
        column_keys = sorted(keys) if isinstance(self.statement, Insert) else None
        compiled = cast(SQLCompiler, self.statement.compile(dialect=dialect, column_keys=column_keys))
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            raise ValueError("a prepared statement needs every column value given (no defaults applied)")
        if getattr(compiled, "escaped_bind_names", None):
            raise ValueError("a prepared statement takes plain parameter names")
        # Every parameter with its value: the caller's (placeholders here) and the statement's own.
        values = compiled.construct_params(dict.fromkeys(keys)) or {}
        positional = bool(compiled.positional)
        order = tuple(compiled.positiontup or ()) if positional else tuple(values)
        binds = compiled.binds

        def processor(name: str) -> Callable[[Any], Any] | None:
            return binds[name].type.dialect_impl(dialect).bind_processor(dialect)

        processors = {name: processor(name) for name in set(order) if name in keys}
        fixed = {}
        for name in set(order) - keys:
            process = processor(name)
            fixed[name] = process(values[name]) if process is not None else values[name]
        columns = getattr(self.statement, "selected_columns", ())
        results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
        form = _Form(str(compiled), positional, order, processors, fixed, results)
        with self._lock:
            self._forms[slot] = form
        return form

    def _run(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, _Form]:
        dialect = conn.dialect
        form = self._form(dialect, frozenset(params))
        values = dict(form.fixed)
        for name, process in form.processors.items():
            value = params[name]
            values[name] = process(value) if process is not None else value
        args: Sequence[Any] | Mapping[str, Any] = (
            tuple(values[name] for name in form.order) if form.positional else values
        )
        cursor = conn.connection.cursor()
        try:
            cursor.execute(form.sql, args)
        except dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise DBAPIError.instance(form.sql, args, exc, dialect.loaded_dbapi.Error) from exc
        return cursor, form

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> None:
        """Run a statement that returns no rows (an insert, an update)."""
        self._run(conn, params)[0].close()

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row of a query (each value through its column type's result processing), or None."""
        cursor, form = self._run(conn, params)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        if row is None:
            return None
        return tuple(
            value if process is None or value is None else process(value)
            for value, process in zip(row, form.results, strict=True)
        )
