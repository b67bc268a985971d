"""Precompiled reads for the device plane's hot paths.

Compiling a queryset that joins several models costs more than running it (about 1 ms per query,
measured in bench/), and a device asks the same questions every few seconds. A `JoinedRead` builds
its SQL once per process from the models' metadata and turns each row into model instances, with
the same converters the ORM applies, so row-level security, field types and column renames stay
the ORM's business.
"""

import functools
from dataclasses import dataclass

from django.db import connection


@dataclass(frozen=True)
class Table:
    """One model in a read: the first is the FROM table, the others join `on` a condition; `outer`
    tables (LEFT JOIN) may be absent, and their instance is then None."""

    alias: str
    model: type
    on: str = ""
    outer: bool = False


class JoinedRead:
    """SELECT every concrete column of `tables`, filtered by `where`.

    `where` has one %s per entry of `params`, an (alias, field name) pair saying which field the value
    is compared with, so that it is prepared for the database as the ORM would (a UUID on SQLite is
    hex text). `fetch(values)` returns one tuple of instances per row, in the order of `tables`.
    """

    def __init__(self, *tables, where, params=(), order_by="", limit=None):
        self.tables, self.where, self.order_by, self.limit = tables, where, order_by, limit
        models = {table.alias: table.model for table in tables}
        self.param_fields = [models[alias]._meta.get_field(name) for alias, name in params]

    @functools.cached_property
    def _compiled(self):
        quote = connection.ops.quote_name
        columns, layout = [], []
        for table in self.tables:
            fields = []
            for field in table.model._meta.concrete_fields:
                col = field.get_col(table.alias)
                columns.append(f"{table.alias}.{quote(field.column)}")
                converters = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
                fields.append((field.attname, col, converters))
            attnames = [attname for attname, _, _ in fields]
            layout.append((table, attnames, fields, attnames.index(table.model._meta.pk.attname)))
        first, *joined = self.tables
        sql = [f"SELECT {', '.join(columns)} FROM {quote(first.model._meta.db_table)} {first.alias}"]
        for table in joined:
            join = "LEFT JOIN" if table.outer else "JOIN"
            sql.append(f"{join} {quote(table.model._meta.db_table)} {table.alias} ON {table.on}")
        sql.append(f"WHERE {self.where}")
        if self.order_by:
            sql.append(f"ORDER BY {self.order_by}")
        if self.limit is not None:
            sql.append(f"LIMIT {int(self.limit)}")
        return " ".join(sql), layout

    def fetch(self, values):
        sql, layout = self._compiled
        params = [field.get_db_prep_value(value, connection) for field, value in zip(self.param_fields, values, strict=True)]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        return [self._instances(row, layout) for row in rows]

    @staticmethod
    def _instances(row, layout):
        values, instances = iter(row), []
        for table, attnames, fields, pk_index in layout:
            converted = [_convert(next(values), col, converters) for _, col, converters in fields]
            absent = table.outer and converted[pk_index] is None
            instances.append(None if absent else table.model.from_db(connection.alias, attnames, converted))
        return tuple(instances)


def _convert(value, col, converters):
    for converter in converters:
        value = converter(value, col, connection)
    return value
