"""Statements run on the cursor store exactly what SQLAlchemy Core would, and fail alike."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from claims.models import Claim, TimelineEntry
from common.extensions import db
from common.fastsql import FastStatement, insert_into
from common.jobs import OutboxJob
from tests.conftest import requires_postgres
from tests.round_trips import RoundTrips

CLAIMS = Claim.__table__
INSERT_CLAIM = insert_into(CLAIMS, returning=("id",))


def claim_values(number: str, **changes) -> dict:
    values = {
        "claim_number": number, "purchase_id": None, "serial_number": "SN-FAST-" + number,
        "sku": "SKU-1", "email": "ann@example.com", "customer_name": "Ann <b>O'Neil</b>",
        "fault_category": "battery", "description": "Dies after 10 % — «quoted» ✓",
        "dead_on_arrival": True, "requested_remedy": None, "remedy": "repair",
        "return_address": {"street": "Storgatan 1", "lines": ["a", None, 3], "nested": {"x": 1.5}},
        "language": "sv", "status": "approved",
        "reasons": [{"code": "ok", "params": {"months": 24}}], "open_serial": None,
        "source": "api", "tracking_token_hash": "f" * 63 + number[-1],
        "decided_at": datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC), "decided_by": "rules",
        "warranty_ends_on": date(2027, 12, 31),
        "filed_at": datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC),
    }
    values.update(changes)
    return values


def stored(claim_id: int) -> dict:
    row = db.session.execute(select(CLAIMS).where(CLAIMS.c.id == claim_id)).one()._asdict()
    row.pop("id")
    row.pop("claim_number")
    row.pop("serial_number")
    row.pop("tracking_token_hash")
    return row


def test_a_row_written_on_the_cursor_reads_back_as_a_core_insert_writes_it(app):
    connection = db.session.connection()
    core_id = connection.execute(CLAIMS.insert().returning(CLAIMS.c.id),
                                 claim_values("C00000001")).scalar_one()
    fast_id = INSERT_CLAIM.scalar(connection, claim_values("C00000002"))
    db.session.commit()
    assert fast_id != core_id
    assert stored(fast_id) == stored(core_id)
    assert stored(fast_id)["return_address"]["nested"] == {"x": 1.5}
    assert stored(fast_id)["decided_at"] == datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    assert stored(fast_id)["warranty_ends_on"] == date(2027, 12, 31)


def test_left_out_columns_take_their_python_default_or_null(app):
    values = claim_values("C00000003")
    for name in ("dead_on_arrival", "return_address", "language", "reasons", "source",
                 "filed_at", "decided_at", "remedy"):
        values.pop(name)
    before = datetime.now(UTC)
    claim_id = INSERT_CLAIM.scalar(db.session.connection(), values)
    db.session.commit()
    row = stored(claim_id)
    assert row["dead_on_arrival"] is False and row["return_address"] == {}
    assert row["language"] == "en" and row["reasons"] == [] and row["source"] == "api"
    assert row["decided_at"] is None and row["remedy"] is None
    assert row["filed_at"] >= before.replace(microsecond=0)


def test_a_required_column_without_a_value_is_refused_before_the_database(app):
    values = claim_values("C00000004")
    values.pop("status")  # NOT NULL and no default
    with pytest.raises(KeyError, match="status"):
        INSERT_CLAIM.execute(db.session.connection(), values)


def test_a_constraint_violation_is_sqlalchemys_integrity_error(app):
    connection = db.session.connection()
    INSERT_CLAIM.execute(connection, claim_values("C00000005"))
    with pytest.raises(IntegrityError) as raised:
        INSERT_CLAIM.execute(connection, claim_values("C00000005", tracking_token_hash="e" * 64))
    assert "claims" in str(raised.value.statement).lower()
    db.session.rollback()
    assert db.session.scalar(select(CLAIMS.c.id)) is None, "the transaction rolled back"


def test_cursor_listeners_see_every_statement(app):
    seen = []

    def listener(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        seen.append((statement.split()[0:3], executemany))

    engine = db.engine
    event.listen(engine, "before_cursor_execute", listener)
    try:
        outbox = insert_into(OutboxJob.__table__, ("job_name", "kwargs", "created_at",
                                                  "attempts"))
        outbox.execute_many(db.session.connection(), [{"job_name": "a", "kwargs": {"n": 1}},
                                                      {"job_name": "b", "kwargs": {}}])
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert seen == [(["INSERT", "INTO", "outbox_jobs"], True)]
    rows = db.session.execute(select(OutboxJob.job_name, OutboxJob.kwargs, OutboxJob.attempts)
                              .order_by(OutboxJob.id)).all()
    assert [tuple(r) for r in rows] == [("a", {"n": 1}, 0), ("b", {}, 0)]


def test_statement_parameters_are_bound_not_spliced(app):
    from sqlalchemy import String

    echo = FastStatement("SELECT :value", {"value": String()})
    hostile = "x'); DROP TABLE claims; --"
    assert echo.execute(db.session.connection(), {"value": hostile}).fetchone()[0] == hostile
    assert db.session.scalar(select(CLAIMS.c.id).limit(1)) is None  # the table is still there


def test_the_connection_is_looked_up_once_per_transaction(app):
    from common.fastsql import connection_of

    first = connection_of()
    assert connection_of() is first is db.session.connection()
    db.session.commit()
    second = connection_of()
    assert second is db.session.connection() and second is not first
    db.session.rollback()
    assert connection_of() is db.session.connection() is not second


def test_a_query_on_the_cursor_returns_what_core_returns(app):
    from sqlalchemy import bindparam, func, literal
    from sqlalchemy.orm import aliased

    from common.fastsql import FastQuery

    connection = db.session.connection()
    for number, status in (("C00000011", "approved"), ("C00000012", "closed"),
                           ("C00000013", "rejected")):
        INSERT_CLAIM.scalar(connection, claim_values(number, status=status,
                                                     serial_number="SN-Q"))
    other = aliased(Claim, name="other")
    query = (
        select(CLAIMS.c.claim_number, CLAIMS.c.return_address, CLAIMS.c.warranty_ends_on,
               CLAIMS.c.decided_at, CLAIMS.c.dead_on_arrival, CLAIMS.c.requested_remedy,
               select(func.count(Claim.id))
               .where(Claim.serial_number == bindparam("serial"),
                      Claim.status.in_([literal("approved"), literal("closed")]))
               .scalar_subquery().label("counted"),
               other.id.label("other_id"))
        .outerjoin(other, other.claim_number == "no such claim")
        .where(CLAIMS.c.serial_number == bindparam("serial"))
        .order_by(CLAIMS.c.claim_number)
    )
    fast = FastQuery(query, parameters=("serial",)).all(connection, {"serial": "SN-Q"})
    core = connection.execute(query, {"serial": "SN-Q"}).all()
    assert [tuple(row) for row in fast] == [tuple(row) for row in core]
    assert len(fast) == 3 and fast[0].counted == 2 and fast[0].other_id is None
    assert fast[0].warranty_ends_on == date(2027, 12, 31)
    assert fast[0].return_address["nested"] == {"x": 1.5}
    assert FastQuery(query, parameters=("serial",)).all(connection, {"serial": "none"}) == []
    db.session.rollback()


# --- children by natural key, values read later, batches --------------------------------------

TIMELINE = TimelineEntry.__table__
INSERT_STEP = insert_into(TIMELINE, references={"claim_id": CLAIMS.c.claim_number})


def test_a_child_row_names_its_parent_by_natural_key(app):
    connection = db.session.connection()
    claim_id = INSERT_CLAIM.scalar(connection, claim_values("C00000011"))
    INSERT_STEP.execute(connection, {"claim_number": "C00000011", "kind": "filed",
                                     "params": {}, "occurred_at": datetime.now(UTC)})
    assert db.session.scalar(select(TIMELINE.c.claim_id)) == claim_id


def test_a_child_of_an_unknown_parent_is_refused(app):
    with pytest.raises(IntegrityError):  # NOT NULL: the lookup found no claim
        INSERT_STEP.execute(db.session.connection(), {
            "claim_number": "C-NO-SUCH", "kind": "filed", "params": {},
            "occurred_at": datetime.now(UTC)})
    db.session.rollback()


def test_a_returned_value_is_the_rows_id(app):
    returned = INSERT_CLAIM.returned(db.session.connection(), claim_values("C00000012"))
    assert returned.value == db.session.scalar(select(CLAIMS.c.id)) == returned.row[0]


def _dbapi(connection):  # noqa: ANN001, ANN202
    return connection.connection.driver_connection


def traced(tmp_path):  # noqa: ANN001, ANN202
    """The session's connection, its driver connection, and its round trips being counted."""
    connection = db.session.connection()
    dbapi_connection = _dbapi(connection)
    return connection, dbapi_connection, RoundTrips(dbapi_connection, tmp_path / "trace")


def step(claim_number: str, kind: str = "filed") -> dict:
    return {"claim_number": claim_number, "kind": kind, "params": {},
            "occurred_at": datetime.now(UTC)}


def count_rows(table) -> int:  # noqa: ANN001
    return db.session.scalar(select(func.count()).select_from(table))


@requires_postgres
def test_a_batch_sends_its_writes_as_one_self_committing_statement(app, tmp_path):
    from common.fastsql import write_batch

    db.session.commit()  # start outside a transaction, as a request does
    connection, dbapi_connection, trips = traced(tmp_path)
    with write_batch(connection):
        claim_id = INSERT_CLAIM.returned(connection, claim_values("C00000021"))
        INSERT_STEP.execute_many(connection, [step("C00000021", kind)
                                              for kind in ("filed", "approved", "rma_issued")])
        db.session.commit()
    assert trips.stop() == 1
    assert len(trips.statements()) == 1, "no BEGIN, no COMMIT"
    assert dbapi_connection.autocommit is False, "autocommit never reaches the pool"
    assert claim_id.value == db.session.scalar(select(CLAIMS.c.id))
    # The steps found the claim inserted beside them, and kept their order.
    assert db.session.execute(select(TIMELINE.c.claim_id, TIMELINE.c.kind)
                              .order_by(TIMELINE.c.id)).all() == [
        (claim_id.value, "filed"), (claim_id.value, "approved"), (claim_id.value, "rma_issued")]


@requires_postgres
def test_without_a_batch_every_statement_waits(app, tmp_path):
    connection, _dbapi_connection, trips = traced(tmp_path)
    INSERT_CLAIM.returned(connection, claim_values("C00000022"))
    INSERT_STEP.execute(connection, step("C00000022"))
    db.session.commit()
    assert trips.stop() == 4  # BEGIN, two INSERTs, COMMIT


@requires_postgres
def test_a_child_in_a_batch_finds_a_parent_written_before_it(app):
    from common.fastsql import write_batch

    claim_id = INSERT_CLAIM.scalar(db.session.connection(), claim_values("C00000029"))
    db.session.commit()
    connection = db.session.connection()
    with write_batch(connection):
        INSERT_CLAIM.execute(connection, claim_values("C00000030"))  # another parent beside it
        INSERT_STEP.execute(connection, step("C00000029"))
        db.session.commit()
    assert db.session.scalar(select(TIMELINE.c.claim_id)) == claim_id


@requires_postgres
def test_an_error_in_a_batch_is_integrity_error_at_the_commit_and_nothing_stays(app):
    from common.fastsql import write_batch

    db.session.commit()
    connection = db.session.connection()
    dbapi_connection = _dbapi(connection)
    with pytest.raises(IntegrityError) as raised, write_batch(connection):
        INSERT_CLAIM.execute(connection, claim_values("C00000023"))
        INSERT_STEP.execute(connection, step("C00000023"))
        INSERT_CLAIM.execute(connection, claim_values("C00000023", tracking_token_hash="e" * 64))
        db.session.commit()
    assert "unique" in str(raised.value.orig).lower() or "duplicate" in str(raised.value.orig)
    assert dbapi_connection.autocommit is False
    db.session.rollback()
    assert count_rows(CLAIMS) == 0 and count_rows(TIMELINE) == 0


@requires_postgres
def test_an_error_raised_in_the_block_sends_nothing(app):
    from common.fastsql import write_batch

    db.session.commit()
    connection = db.session.connection()
    dbapi_connection = _dbapi(connection)
    with pytest.raises(LookupError), write_batch(connection):
        INSERT_CLAIM.execute(connection, claim_values("C00000031"))
        raise LookupError("the caller changed its mind")
    assert dbapi_connection.autocommit is False
    db.session.commit()
    assert count_rows(CLAIMS) == 0


@requires_postgres
def test_reading_a_value_early_writes_the_batch_so_far_inside_a_transaction(app, tmp_path):
    from common.fastsql import write_batch

    db.session.commit()
    connection, _dbapi_connection, trips = traced(tmp_path)
    with write_batch(connection):
        INSERT_CLAIM.execute(connection, claim_values("C00000024"))
        returned = INSERT_CLAIM.returned(connection, claim_values("C00000025"))
        assert returned.value is not None  # sent now, after a BEGIN
        INSERT_STEP.execute(connection, step("C00000025"))
        db.session.rollback()  # so nothing of it may stay
    trips.stop()
    assert trips.statements()[0].endswith("BEGIN\"")
    assert count_rows(CLAIMS) == 0 and count_rows(TIMELINE) == 0


@requires_postgres
def test_reading_an_earlier_statements_error_raises_it(app):
    from common.fastsql import write_batch

    connection = db.session.connection()
    with pytest.raises(IntegrityError), write_batch(connection):
        INSERT_STEP.execute(connection, step("C-NO-SUCH"))
        INSERT_CLAIM.returned(connection, claim_values("C00000026")).value  # noqa: B018
    db.session.rollback()
    assert count_rows(CLAIMS) == 0


def test_a_batch_without_a_commit_leaves_the_transaction_to_the_caller(app):
    from common.fastsql import write_batch

    db.session.commit()
    connection = db.session.connection()
    with write_batch(connection):
        INSERT_CLAIM.execute(connection, claim_values("C00000027"))
    assert count_rows(CLAIMS) == 1, "written in the caller's transaction"
    db.session.rollback()
    assert count_rows(CLAIMS) == 0


def test_a_returned_value_is_read_after_the_batchs_commit(app):
    """On PostgreSQL from the batch's statement; SQLite runs the block as it is."""
    from common.fastsql import write_batch

    connection = db.session.connection()
    with write_batch(connection):
        returned = INSERT_CLAIM.returned(connection, claim_values("C00000032"))
        db.session.commit()
    assert returned.value == db.session.scalar(select(CLAIMS.c.id))


def test_sqlalchemys_own_statements_in_a_batch_find_its_writes_done(app):
    from common.fastsql import write_batch

    db.session.commit()
    connection = db.session.connection()
    with write_batch(connection):
        INSERT_CLAIM.execute(connection, claim_values("C00000033"))
        # Core reads the batched row; the ORM flush reads the id its INSERT returns.
        claim_id = db.session.scalar(select(CLAIMS.c.id).where(
            CLAIMS.c.claim_number == "C00000033"))
        entry = TimelineEntry(claim_id=claim_id, kind="filed", params={},
                              occurred_at=datetime.now(UTC))
        db.session.add(entry)
        db.session.flush()
        assert entry.id is not None
        INSERT_STEP.execute(connection, step("C00000033", "approved"))
        db.session.commit()
    assert db.session.scalars(select(TIMELINE.c.kind).order_by(TIMELINE.c.id)).all() == [
        "filed", "approved"]


@requires_postgres
def test_two_statements_with_the_same_ctes_share_a_batch(app):
    from sqlalchemy import Integer

    from common.fastsql import write_batch

    bump = FastStatement("INSERT INTO outbox_jobs (job_name, kwargs, created_at, attempts) "
                         "SELECT 'bump', '{}', now(), n FROM counted",
                         {"n": Integer()}, ctes=[("counted", "SELECT CAST(:n AS integer) AS n")])
    db.session.commit()
    connection = db.session.connection()
    with write_batch(connection):
        bump.execute(connection, {"n": 1})
        bump.execute(connection, {"n": 2})  # cannot join the first: it is written first
        db.session.commit()
    assert db.session.scalars(select(OutboxJob.attempts).order_by(OutboxJob.id)).all() == [1, 2]


@pytest.mark.parametrize(("sqlstate", "ended"), [
    ("57P01", True),   # admin_shutdown: pg_terminate_backend
    ("57P02", True),   # crash_shutdown
    ("08006", True),   # connection_failure
    ("23505", False),  # unique_violation
    ("40001", False),  # serialization_failure: retry, the connection is fine
    (None, False),
])
def test_an_ended_session_counts_as_a_lost_connection(sqlstate, ended):
    from common.fastsql import session_ended

    error = type("DriverError", (Exception,), {"sqlstate": sqlstate})()
    assert session_ended(error) is ended


def test_a_reference_must_be_a_unique_key_with_a_parameter_name_of_its_own():
    from inventory.models import Scan
    from rma.models import Rma

    with pytest.raises(ValueError, match="unique key"):  # many claims per serial
        insert_into(TIMELINE, references={"claim_id": CLAIMS.c.serial_number})
    with pytest.raises(ValueError, match="unique key"):  # scans has its own rma_number
        insert_into(Scan.__table__, references={"outcome": Rma.__table__.c.rma_number})
    with pytest.raises(ValueError, match="must be written"):  # not among the columns
        insert_into(TIMELINE, ("kind",), references={"claim_id": CLAIMS.c.claim_number})


@requires_postgres
def test_a_batch_inside_another_joins_it(app, tmp_path):
    from common.fastsql import write_batch

    db.session.commit()
    connection, _dbapi_connection, trips = traced(tmp_path)
    with write_batch(connection):
        INSERT_CLAIM.execute(connection, claim_values("C00000028"))
        with write_batch(connection):
            INSERT_STEP.execute(connection, step("C00000028"))
        db.session.commit()
    assert trips.stop() == 1
    assert count_rows(TIMELINE) == 1
