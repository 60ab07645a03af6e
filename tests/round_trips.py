"""Round trips between the app and PostgreSQL, counted from libpq's own trace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psycopg import pq


class RoundTrips:
    """Counts the client's waits for the server on a psycopg connection, from libpq's trace:
    every change from messages sent (F) to messages received (B) is one round trip."""

    def __init__(self, dbapi_connection: Any, path: Path) -> None:
        self.pgconn, self.path = dbapi_connection.pgconn, path
        self.handle = open(path, "w")  # noqa: SIM115 - closed in stop()
        self.pgconn.trace(self.handle.fileno())
        self.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    def stop(self) -> int:
        self.pgconn.untrace()
        self.handle.close()
        lines = self.lines = self.path.read_text().splitlines()
        directions = [line.split("\t", 1)[0] for line in lines if line.strip()]
        return sum(1 for before, after in zip(directions, directions[1:], strict=False)
                   if before == "F" and after == "B")

    def statements(self) -> list[str]:
        """The statements run (after ``stop``): a Bind each, or a simple Query (BEGIN, COMMIT)."""
        return [line for line in self.lines if "\tBind\t" in line or "\tQuery\t" in line]

    def parsed(self) -> list[str]:
        """The Parse messages (after ``stop``): the SQL of each statement not yet prepared."""
        return [line for line in self.lines if "\tParse\t" in line]
