r"""Technologies: CRUD writes that are safe to retry, from a generic factory that turns a table
and a JSON schema into a durable service (a "higher-order service").

`create` validates the item (an invalid one fails at once with 400 naming the field, and
nothing is written), then upserts it in a journaled step: a retried attempt, or a client retry
with the same Idempotency-Key, writes it once. Backed by a SQLite file for the example
(`TECHNOLOGIES_DB`, default technologies.db).

tarry dev examples/technologies.py
curl localhost:8080/Technologies/create -H 'Idempotency-Key: t1' \
  --json '{"id": "python", "name": "Python", "category": "language", "since": 1991}'
curl localhost:8080/Technologies/get --json '"python"'
"""

import json
import os
import sqlite3
from contextlib import closing
from typing import Any

from jsonschema import Draft202012Validator

import tarry
from tarry import TerminalError


def _db() -> sqlite3.Connection:
    return sqlite3.connect(os.environ.get("TECHNOLOGIES_DB", "technologies.db"))


class Table:
    """One SQLite table of JSON rows keyed by ``id``; ``writes`` counts the writes of a row."""

    def __init__(self, name: str) -> None:
        if not name.isidentifier():
            raise ValueError(f"invalid table name {name!r}")
        self.name = name

    def _open(self) -> sqlite3.Connection:
        db = _db()
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {self.name} "
            "(id TEXT PRIMARY KEY, row TEXT NOT NULL, writes INTEGER NOT NULL DEFAULT 1)"
        )
        return db

    def upsert(self, row: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace: writing the same row twice leaves one row."""
        with closing(self._open()) as db, db:
            db.execute(
                f"INSERT INTO {self.name} (id, row) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET row = excluded.row, writes = writes + 1",
                (row["id"], json.dumps(row, sort_keys=True)),
            )
        return row

    def get(self, row_id: str) -> dict[str, Any] | None:
        with closing(self._open()) as db:
            found = db.execute(f"SELECT row FROM {self.name} WHERE id = ?", (row_id,)).fetchone()
        return json.loads(found[0]) if found else None


def crud_service(name: str, table: Table, schema: dict[str, Any]) -> tarry.Service:
    """A durable service with ``create(item)`` and ``get(id)`` over ``table``; items must
    match ``schema`` (JSON Schema) and have a string ``id``."""
    validator = Draft202012Validator(
        {**schema, "required": sorted({"id", *schema.get("required", [])})}
    )
    service = tarry.Service(name)

    @service.handler("create")
    async def create(ctx: tarry.Context, item: dict[str, Any]) -> dict[str, Any]:
        error = next(iter(validator.iter_errors(item)), None)
        if error is not None:
            path = [str(p) for p in error.absolute_path]
            if error.validator == "required" and isinstance(error.instance, dict):
                path += [next(f for f in error.validator_value if f not in error.instance)]
            field = "/".join(path) or "item"
            raise TerminalError(f"invalid {name} item: {field}: {error.message}", 400)
        row: dict[str, Any] = await ctx.run(f"upsert {table.name}", table.upsert, item)
        return row

    @service.handler("get")
    async def get(ctx: tarry.Context, row_id: str) -> dict[str, Any]:
        row = await ctx.run(f"read {table.name}", table.get, row_id)
        if row is None:
            raise TerminalError(f"no {name} item {row_id!r}", 404)
        found: dict[str, Any] = row
        return found

    return service


TECHNOLOGY = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9-]+$"},
        "name": {"type": "string", "minLength": 1},
        "category": {"enum": ["language", "database", "framework", "tool"]},
        "since": {"type": "integer", "minimum": 1940},
    },
    "required": ["name", "category"],
    "additionalProperties": False,
}
TEAM = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "members": {"type": "array"}},
}

technologies = crud_service("Technologies", Table("technologies"), TECHNOLOGY)
teams = crud_service("Teams", Table("teams"), TEAM)  # a second table: one line

app = tarry.app([technologies, teams])
