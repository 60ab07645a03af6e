"""Claims filed per second through the real API beside a bare one-row-insert endpoint.

``python -m bench.claims_api [--seconds 10] [--rounds 1] [--database sqlite|postgresql]
[--concurrency 8]``

Both servers run the same way, side by side: gunicorn, 2 sync workers, bound to 127.0.0.1 on a
free port, started here as subprocesses and stopped at the end whatever happens. Load comes
from a thread pool in this process (one ``http.client`` connection per thread, re-opened
whenever the server closes it: gunicorn's sync workers close after every response) against one
server at a time, for ``--warmup`` seconds, not counted, then ``--seconds`` measured. The
target is claim filing at >= 50% of the bare insert. ``--rounds N`` alternates the two loads N
times (``--seconds`` split between the rounds, each window after its own warm-up) and prints
every round's ratio: on a machine whose speed drifts from minute to minute, one long window
each compares two different machines.

Claim filing (``POST /api/v1/claims``): the database is migrated and loaded through the real
``flask --app app demo`` import; every request files a claim for a different registered serial
with its correct email and a fault the product does not exclude, so every claim is approved:
validation, decision, RMA, timeline, audit events, a label job and an announcement job (two
outbox rows; the announcement records the customer's email and the webhook deliveries later).
``REDIS_URL`` points at a Redis database flushed before and after, and one
``flask --app app outbox relay --loop`` runs beside gunicorn, as in production: it sends the
committed outbox rows to rq in batches while the load runs (on the same two cores, so its CPU
counts against claim filing); no rq worker runs.

The bare endpoint (``bench.bare_insert_app``): Flask + Flask-SQLAlchemy, one JSON POST, one
INSERT, 201. SQLite: a fresh WAL file of its own; PostgreSQL: its own table in the same database.

Databases: ``sqlite`` uses fresh files in a temporary folder; ``postgresql`` creates the database
``aftercare_bench`` (or ``--pg-database``) on ``--pg-server`` (dropping any previous one of that
name) and drops it at the end. After the runs the claims, RMAs, outbox rows and rq jobs are
counted against the 201s.

After the table it prints the CPU each successful request cost, by process group (the server's
gunicorn master and workers, the relay, this load generator, redis-server, and the postgres
processes), over the measured windows only, and how busy the whole machine was
(``bench/cpu.py``, read from /proc). On a CPU-bound machine the throughput ratio follows the
ratio of the "all" column; the columns say which process a change has to make cheaper. They
are approximate: redis-server and postgres count every such process on the machine, the relay's
work left over from one window is charged to the next, and requests still in flight when a
window closes cost CPU without being counted.

``--profile N`` then files N more claims in-process through the Flask test client (same database,
same Redis, same code path less gunicorn and HTTP) under cProfile and prints the hotspots
(``--profile-out PATH`` keeps the stats). ``--workers`` changes the gunicorn worker count of both
servers, for comparison only. req/s counts 201s completed inside the measured window; anything
else (a 200 duplicate, a 5xx, a connection error) is an error. Exit status 1 when the row counts
do not match the 201s.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import io
import json
import os
import pstats
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask

from bench import cpu
from bench.common import start_process, stop_process
from bench.cpu import CpuMeter

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.5
PG_DATABASE = "aftercare_bench"
FAULT = "battery"  # no demo product excludes it
DESCRIPTION = "The battery drains from full to empty within an hour of light use."
CLAIMS_PATH = "/api/v1/claims"
BARE_PATH = "/insert"
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
GUNICORN_WORKERS = 2
SERVER_PIDS: dict[int, int] = {}  # port -> gunicorn master pid, for the CPU figures


# --- request bodies ------------------------------------------------------------------------------


class Feed:
    """Hands each request its own body; ``None`` once a finite supply runs out."""

    def __init__(self, bodies: list[bytes] | None = None, make: Any = None) -> None:
        self._bodies, self._make = bodies, make
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> bytes | None:
        with self._lock:
            index = self._next
            self._next += 1
        if self._bodies is None:
            return self._make(index)
        return self._bodies[index] if index < len(self._bodies) else None

    def remaining(self) -> list[bytes]:
        with self._lock:
            return [] if self._bodies is None else self._bodies[self._next :]


def bare_body(index: int) -> bytes:
    return json.dumps(
        {"name": f"Customer {index}", "email": f"customer{index}@example.com", "note": DESCRIPTION}
    ).encode()


def approved_claim_bodies(app: Flask) -> list[bytes]:
    """One body per registered purchase the rules approve today for a battery fault."""
    from sqlalchemy import select

    from catalog.models import Product, Purchase
    from claims import rules
    from claims.service import _product_terms  # the app's own mapping of product terms
    from claims.settings import claim_settings
    from common.extensions import db

    today = datetime.now(UTC).date()
    bodies: list[bytes] = []
    with app.app_context():
        settings = claim_settings(app.config)
        terms = {p.sku: _product_terms(p, settings) for p in db.session.scalars(select(Product))}
        seen: set[str] = set()
        rows = db.session.execute(
            select(
                Purchase.serial_number,
                Purchase.sku,
                Purchase.purchase_date,
                Purchase.customer_email,
            ).order_by(Purchase.id)
        )
        for serial, sku, bought, email in rows:
            if serial in seen or sku not in terms:
                continue
            seen.add(serial)
            decision = rules.decide(
                rules.ClaimFacts(serial, email, FAULT, today),
                rules.PurchaseFacts(serial, sku, bought, email),
                terms[sku],
            )
            if decision.status == rules.APPROVED:
                bodies.append(
                    json.dumps(
                        {
                            "serial_number": serial,
                            "email": email,
                            "fault_category": FAULT,
                            "description": DESCRIPTION,
                        }
                    ).encode()
                )
        db.session.remove()
    return bodies


# --- load generator ------------------------------------------------------------------------------


@dataclass
class RunResult:
    name: str
    seconds: float
    latencies: list[float] = field(default_factory=list)  # measured successes, seconds
    requests: int = 0  # completed inside the measured window
    errors: int = 0
    statuses: Counter = field(default_factory=Counter)  # every response, warm-up included
    exceptions: Counter = field(default_factory=Counter)
    exhausted: bool = False

    @property
    def successes(self) -> int:
        return self.requests - self.errors

    @property
    def rate(self) -> float:
        return self.successes / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
        return ordered[index] * 1000


def merged(runs: list[RunResult]) -> RunResult:
    """Several measured windows of one server as one result."""
    total = RunResult(runs[0].name, sum(run.seconds for run in runs))
    for run in runs:
        total.latencies.extend(run.latencies)
        total.requests += run.requests
        total.errors += run.errors
        total.statuses.update(run.statuses)
        total.exceptions.update(run.exceptions)
        total.exhausted |= run.exhausted
    return total


def run_load(
    name: str,
    port: int,
    path: str,
    feed: Feed,
    *,
    concurrency: int,
    warmup: float,
    seconds: float,
    expect: int = 201,
    meter: CpuMeter | None = None,
) -> RunResult:
    """``concurrency`` threads POST bodies from ``feed``: ``warmup`` s, then ``seconds`` counted.

    ``meter`` measures the CPU of the stack's processes over the counted window.
    """
    result = RunResult(name, seconds)
    lock = threading.Lock()
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies: list[float] = []
        statuses: Counter = Counter()
        exceptions: Counter = Counter()
        requests = errors = 0
        exhausted = False
        try:
            while time.perf_counter() < stop_at:
                body = feed.take()
                if body is None:
                    exhausted = True
                    break
                sent = time.perf_counter()
                status: int | None = None
                try:
                    conn.request("POST", path, body=body, headers=HEADERS)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                    statuses[status] += 1
                except (OSError, http.client.HTTPException) as exc:
                    exceptions[type(exc).__name__] += 1
                    conn.close()
                done = time.perf_counter()
                if measure_from <= done <= stop_at:
                    requests += 1
                    if status == expect:
                        latencies.append(done - sent)
                    else:
                        errors += 1
        finally:
            conn.close()
            with lock:
                result.latencies.extend(latencies)
                result.statuses.update(statuses)
                result.exceptions.update(exceptions)
                result.requests += requests
                result.errors += errors
                result.exhausted |= exhausted

    threads = [
        threading.Thread(target=worker, name=f"load-{n}", daemon=True) for n in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    if meter is not None:
        time.sleep(max(0.0, measure_from - time.perf_counter()))
        meter.start()
    for thread in threads:
        thread.join(timeout=warmup + seconds + 60)
    if meter is not None:
        meter.stop()
    return result


# --- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn(
    app_spec: str, env: dict[str, str], log_path: Path, workers: int = GUNICORN_WORKERS
) -> Iterator[int]:
    """A gunicorn master with ``workers`` sync workers on a free loopback port, stopped on exit."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        str(workers),
        "-k",
        "sync",
        "-b",
        f"127.0.0.1:{port}",
        "--timeout",
        "60",
        "--graceful-timeout",
        "5",
        "--log-level",
        "warning",
        "--error-logfile",
        str(log_path),
        app_spec,
    ]
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    SERVER_PIDS[port] = proc.pid
    try:
        wait_until_ready(proc, port, log_path, workers)
        yield port
    finally:
        stop_process(proc, grace=15)


@contextmanager
def relay(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """``flask --app app outbox relay --loop`` (the production relay), stopped on exit."""
    proc = start_process([sys.executable, "-m", "flask", "--app", "app", "outbox", "relay",
                          "--loop"], cwd=ROOT, env=env, log_path=log_path)
    try:
        yield proc
    finally:
        stop_process(proc, grace=15)


def wait_until_relayed(app: Flask, proc: subprocess.Popen, timeout: float = 60.0) -> float:
    """Seconds until no outbox row waits for the relay (the load has stopped)."""
    from sqlalchemy import func, select

    from common.extensions import db
    from common.jobs import OutboxJob

    started = time.perf_counter()
    with app.app_context():
        while True:
            waiting = db.session.scalar(select(func.count(OutboxJob.id))
                                        .where(OutboxJob.dispatched_at.is_(None)))
            db.session.remove()
            if not waiting:
                return time.perf_counter() - started
            if proc.poll() is not None or time.perf_counter() - started > timeout:
                raise RuntimeError(f"the relay left {waiting} outbox rows unsent")
            time.sleep(0.1)


def wait_until_ready(
    proc: subprocess.Popen, port: int, log_path: Path, workers: int, timeout: float = 60.0
) -> None:
    """Both workers answer ``/healthz`` (a few successes in a row, spread over the workers)."""
    deadline = time.monotonic() + timeout
    successes = 0
    while successes < 2 * workers:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n{tail(log_path)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn not ready after {timeout:.0f} s:\n{tail(log_path)}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            successes = successes + 1 if response.status == 200 else 0
        except (OSError, http.client.HTTPException):
            successes = 0
            time.sleep(0.2)
        finally:
            conn.close()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- databases -----------------------------------------------------------------------------------


@dataclass
class Setup:
    kind: str
    app_url: str
    bare_url: str
    workdir: Path


def psql(server: str, sql: str) -> None:
    env = dict(os.environ, PGOPTIONS="-c client_min_messages=warning")
    subprocess.run(
        ["psql", server.rstrip("/") + "/postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
    )


@contextmanager
def database(kind: str, pg_server: str, pg_database: str = PG_DATABASE) -> Iterator[Setup]:
    with tempfile.TemporaryDirectory(prefix="aftercare-bench-") as tmp:
        workdir = Path(tmp)
        if kind == "sqlite":
            yield Setup(
                kind,
                f"sqlite:///{workdir / 'bench.sqlite3'}",
                f"sqlite:///{workdir / 'bare.sqlite3'}",
                workdir,
            )
            return
        url = f"{pg_server.rstrip('/')}/{pg_database}"
        psql(pg_server, f"DROP DATABASE IF EXISTS {pg_database} WITH (FORCE)")
        psql(pg_server, f"CREATE DATABASE {pg_database}")
        try:
            yield Setup(kind, url, url, workdir)
        finally:
            psql(pg_server, f"DROP DATABASE IF EXISTS {pg_database} WITH (FORCE)")


def server_env(setup: Setup, redis_url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("AFTERCARE_ENV", "FLASK_APP", "FLASK_DEBUG")
    }
    env.update(
        DATABASE_URL=setup.app_url,
        REDIS_URL=redis_url,
        RATELIMIT_ENABLED="false",
        SECRET_KEY=secrets.token_hex(32),
        UPLOAD_DIR=str(setup.workdir / "uploads"),
        MAIL_FILE_DIR=str(setup.workdir / "mail"),
        RQ_DEFAULT_QUEUE="aftercare",
        PYTHONUNBUFFERED="1",
    )
    return env


def flask_cli(env: dict[str, str], *args: str) -> None:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    print(f"  flask --app app {' '.join(args)}: {time.perf_counter() - started:.1f} s", flush=True)


def local_app(setup: Setup, redis_url: str | None) -> Flask:
    """The real app in this process: to read back purchases, count rows and profile."""
    from app import create_app
    from common.config import normalize_database_url

    return create_app(
        {
            "AFTERCARE_ENV": "development",
            "SQLALCHEMY_DATABASE_URI": normalize_database_url(setup.app_url),
            "SECRET_KEY": secrets.token_hex(32),
            "REDIS_URL": redis_url,
            "RATELIMIT_ENABLED": False,
            "RATELIMIT_STORAGE_URI": "memory://",
            "RQ_DEFAULT_QUEUE": "aftercare",
            "UPLOAD_DIR": str(setup.workdir / "uploads"),
            "MAIL_FILE_DIR": str(setup.workdir / "mail"),
        }
    )


def flush_redis(redis_url: str) -> None:
    from redis import Redis

    conn = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
    try:
        conn.flushdb()
    finally:
        conn.close()


def rq_jobs_queued(redis_url: str) -> tuple[int, int, int]:
    """rq jobs waiting in every queue, the outbox rows they carry, and how many are distinct."""
    from redis import Redis
    from rq import Queue

    conn = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
    try:
        jobs = [job for queue in Queue.all(connection=conn) for job in queue.get_jobs()]
        rows = [row for job in jobs
                for row in (job.args[0] if isinstance(job.args[0], list) else [job.args[0]])]
        return len(jobs), len(rows), len(set(rows))
    finally:
        conn.close()


# --- checks and report ---------------------------------------------------------------------------


def snapshot(app: Flask, redis_url: str, after_claim_id: int = 0) -> dict[str, int]:
    """Row counts, and claims/RMAs/serials for claims with an id above ``after_claim_id``."""
    from sqlalchemy import func, select

    from audit.models import AuditEvent
    from claims.models import Claim
    from common.extensions import db
    from common.jobs import OutboxJob
    from rma.models import Rma

    with app.app_context():
        count = db.session.scalar
        new = Claim.id > after_claim_id
        counts = {
            "max_claim_id": count(select(func.max(Claim.id))) or 0,
            "claims": count(select(func.count(Claim.id)).where(new)),
            "approved": count(select(func.count(Claim.id)).where(new, Claim.status == "approved")),
            "serials": count(select(func.count(func.distinct(Claim.serial_number))).where(new)),
            "rmas": count(select(func.count(Rma.id)).where(Rma.claim_id > after_claim_id)),
            "events": count(
                select(func.count(AuditEvent.id)).where(
                    AuditEvent.action.in_(("claim.filed", "rma.issued"))
                )
            ),
            "jobs": count(select(func.count(OutboxJob.id))),
            "dispatched": count(
                select(func.count(OutboxJob.id)).where(OutboxJob.dispatched_at.is_not(None))
            ),
        }
        db.session.remove()
    counts["queued"], counts["carried"], counts["distinct"] = rq_jobs_queued(redis_url)
    return counts


def claimed_serials(app: Flask) -> set[str]:
    """Serials that already have a claim (the demo data files a few)."""
    from sqlalchemy import select

    from claims.models import Claim
    from common.extensions import db

    with app.app_context():
        serials = set(db.session.scalars(select(Claim.serial_number)))
        db.session.remove()
    return serials


def verify(
    app: Flask,
    before: dict[str, int],
    created: int,
    bare_created: int,
    bare_rows: int,
    redis_url: str,
) -> bool:
    """Every 201 is one approved claim with one RMA, 2 audit events (filed, issued) and 2 outbox
    jobs (label and announcement), every one of them carried by exactly one rq job."""
    after = snapshot(app, redis_url, after_claim_id=before["max_claim_id"])
    delta = {key: after[key] - before[key]
             for key in ("events", "jobs", "dispatched", "queued", "carried", "distinct")}
    claims_ok = (
        after["claims"] == after["rmas"] == after["approved"] == after["serials"] == created
        and delta["events"] == 2 * created
    )
    jobs_ok = (delta["jobs"] == delta["dispatched"] == delta["carried"] == delta["distinct"]
               == 2 * created)
    bare_ok = bare_rows == bare_created
    print(
        f"claims:  201 responses {created} (warm-up included); new rows: claims "
        f"{after['claims']} (approved {after['approved']}, distinct serials "
        f"{after['serials']}), rmas {after['rmas']}, audit events {delta['events']} "
        f"(expected {2 * created}) -> {'OK' if claims_ok else 'MISMATCH'}"
    )
    print(
        f"jobs:    new outbox rows {delta['jobs']}, sent by the relay {delta['dispatched']}, "
        f"carried by {delta['queued']} rq jobs queued (expected {2 * created}: label + "
        f"announcement per claim) -> {'OK' if jobs_ok else 'MISMATCH'}"
    )
    print(
        f"bare:    201 responses {bare_created}; rows {bare_rows} -> "
        f"{'OK' if bare_ok else 'MISMATCH'}"
    )
    return claims_ok and jobs_ok and bare_ok


def stack_meter(port: int, relay_pid: int, database: str) -> CpuMeter:
    """CPU of every process the load runs through while one server is under load."""
    master = SERVER_PIDS[port]
    groups = {
        "web (gunicorn)": lambda: cpu.tree(master),
        "relay": lambda: cpu.tree(relay_pid),
        "load generator": lambda: [os.getpid()],
        "redis": lambda: cpu.named("redis-server"),
    }
    if database == "postgresql":
        groups["postgresql"] = lambda: cpu.named("postgres")
    return CpuMeter(groups)


def print_cpu(results: list[tuple[RunResult, CpuMeter]]) -> None:
    """CPU milliseconds per successful request, by process group, over the measured windows."""
    if not cpu.available():
        print("CPU per request: not measured (no /proc)")
        return
    names = list(results[0][1].groups)
    print("CPU ms per request " + "".join(f"{name:>16}" for name in names)
          + f"{'all':>9}{'machine busy':>14}")
    for result, meter in results:
        per = meter.ms_per(result.successes)
        print(f"{result.name:<19}" + "".join(f"{per.get(name, 0.0):>16.2f}" for name in names)
              + f"{sum(per.values()):>9.2f}{meter.machine_busy:>13.0%}")
    print()


def print_table(results: list[RunResult]) -> None:
    print(
        f"{'server':<14}{'requests':>10}{'errors':>8}{'req/s':>10}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
    )
    for r in results:
        print(
            f"{r.name:<14}{r.requests:>10}{r.errors:>8}{r.rate:>10.1f}"
            f"{r.percentile(0.50):>9.1f}{r.percentile(0.95):>9.1f}{r.percentile(0.99):>9.1f}"
        )
    for r in results:
        others = {code: n for code, n in r.statuses.items() if code != 201}
        if others or r.exceptions:
            print(f"  {r.name}: non-201 statuses {others}, exceptions {dict(r.exceptions)}")
        if r.exhausted:
            print(
                f"  {r.name}: ran out of request bodies before the time was up (raise --purchases)"
            )


def profile_claims(app: Flask, bodies: list[bytes], top: int, dump: str | None) -> None:
    """File ``len(bodies)`` claims through the test client under cProfile; print hotspots."""
    client = app.test_client()
    for body in bodies[:20]:  # first-request imports and caches stay out of the profile
        client.post(CLAIMS_PATH, data=body, headers=HEADERS)
    bodies = bodies[20:]
    profiler = cProfile.Profile()
    statuses: Counter = Counter()
    started = time.perf_counter()
    profiler.enable()
    for body in bodies:
        statuses[client.post(CLAIMS_PATH, data=body, headers=HEADERS).status_code] += 1
    profiler.disable()
    elapsed = time.perf_counter() - started
    print(
        f"\nprofile: {len(bodies)} claims in-process (test client, one thread) in "
        f"{elapsed:.2f} s = {len(bodies) / elapsed:.1f}/s ({1000 * elapsed / len(bodies):.2f} "
        f"ms each, profiler overhead included); statuses {dict(statuses)}"
    )
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order)
        stats.print_stats(top)
        print(f"\n--- top {top} by {order} ---")
        lines = out.getvalue().splitlines()
        start = next((n for n, line in enumerate(lines) if "ncalls" in line), 0)
        print("\n".join(line for line in lines[start:] if line.strip()))
    if dump:
        profiler.dump_stats(dump)
        print(f"\nprofile saved to {dump} (python -m pstats {dump})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="uncounted seconds before each measured window")
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="alternate the two loads this many times (--seconds split between the rounds)",
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument(
        "--workers", type=int, default=GUNICORN_WORKERS, help="gunicorn sync workers per server"
    )
    parser.add_argument(
        "--purchases",
        type=int,
        default=20_000,
        help="demo purchases to load (only approvable ones are claimed)",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/13",
        help="a Redis database this run may flush",
    )
    parser.add_argument(
        "--pg-server",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL without a database name",
    )
    parser.add_argument(
        "--pg-database",
        default=PG_DATABASE,
        help="database this run creates and drops on --pg-server",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="afterwards, profile N claims in-process and print hotspots",
    )
    parser.add_argument("--profile-top", type=int, default=30, help="hotspots to print")
    parser.add_argument("--profile-out", metavar="PATH", help="also save the cProfile stats")
    args = parser.parse_args(argv)

    ok = True
    with database(args.database, args.pg_server, args.pg_database) as setup:
        env = server_env(setup, args.redis_url)
        label = "SQLite (WAL)" if setup.kind == "sqlite" else "PostgreSQL"
        print(
            f"claims API vs bare insert: {label}, gunicorn -w {args.workers} -k sync, "
            f"{args.concurrency} client threads, {args.seconds:g} s each in {args.rounds} "
            f"round(s), each window after {args.warmup:g} s warm-up",
            flush=True,
        )
        flush_redis(args.redis_url)
        try:
            flask_cli(env, "db", "upgrade")
            flask_cli(env, "demo", "--purchases", str(args.purchases))
            flask_cli(env, "outbox", "relay")  # the demo's own jobs, before counting
            app = local_app(setup, args.redis_url)
            taken = claimed_serials(app)
            bodies = [
                body
                for body in approved_claim_bodies(app)
                if json.loads(body)["serial_number"] not in taken
            ]
            before = snapshot(app, args.redis_url)
            print(
                f"  {len(bodies)} of {args.purchases} purchases approvable today and unclaimed",
                flush=True,
            )
            from bench.bare_insert_app import count_rows, init_db

            init_db(setup.bare_url)

            claims_feed, bare_feed = Feed(bodies), Feed(make=bare_body)
            bare_env = dict(env, DATABASE_URL=setup.bare_url)
            claims_runs: list[RunResult] = []
            bare_runs: list[RunResult] = []
            # Both servers (and the relay) are up throughout; the load alternates between them,
            # so a machine whose speed drifts by the minute weighs on both alike.
            with relay(env, setup.workdir / "relay.log") as relay_proc, gunicorn(
                "app:create_app()", env, setup.workdir / "claims-gunicorn.log", args.workers
            ) as claims_port, gunicorn(
                "bench.bare_insert_app:create_app()",
                bare_env,
                setup.workdir / "bare-gunicorn.log",
                args.workers,
            ) as bare_port:
                meters = {port: stack_meter(port, relay_proc.pid, setup.kind)
                          for port in (claims_port, bare_port)}
                for _round in range(args.rounds):
                    for runs, name, port, path, feed in (
                        (claims_runs, "claim filing", claims_port, CLAIMS_PATH, claims_feed),
                        (bare_runs, "bare insert", bare_port, BARE_PATH, bare_feed),
                    ):
                        runs.append(run_load(
                            name, port, path, feed, concurrency=args.concurrency,
                            warmup=args.warmup, seconds=args.seconds / args.rounds,
                            meter=meters[port],
                        ))
                drained = wait_until_relayed(app, relay_proc)
            claims, bare = merged(claims_runs), merged(bare_runs)
            print()
            print_table([claims, bare])
            print(f"relay: every outbox row sent to rq {drained:.1f} s after the load stopped")
            ratio = claims.rate / bare.rate if bare.rate else 0.0
            met = "MET" if ratio >= TARGET_RATIO else "NOT MET"
            if args.rounds > 1:
                each = [c.rate / b.rate if b.rate else 0.0
                        for c, b in zip(claims_runs, bare_runs, strict=True)]
                print("ratio per round: " + ", ".join(f"{r:.2f}" for r in each)
                      + f" (median {statistics.median(each):.2f})")
            print(f"ratio claims/bare: {ratio:.2f} (target >= {TARGET_RATIO:.2f}: {met})\n")
            print_cpu([(claims, meters[claims_port]), (bare, meters[bare_port])])
            ok = verify(
                app,
                before,
                claims.statuses[201],
                bare.statuses[201],
                count_rows(setup.bare_url),
                args.redis_url,
            )
            if args.profile:
                profile_claims(
                    app,
                    claims_feed.remaining()[: args.profile + 20],
                    args.profile_top,
                    args.profile_out,
                )
            with app.app_context():
                from common.extensions import db

                db.engine.dispose()
        finally:
            flush_redis(args.redis_url)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
