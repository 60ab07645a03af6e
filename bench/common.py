"""Load-generator helpers: an HTTP client per virtual user, per-operation figures, processes.

Used by ``bench.load``. Everything here is standard library: the load generator must not need
a package the app itself does not install.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

# --- HTTP ----------------------------------------------------------------------------------------


@dataclass
class Reply:
    """One answered (or failed) request: ``status`` is None when no answer came back."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    seconds: float
    error: str | None = None
    ok: bool = False  # answered as the caller expected (set by the caller's classification)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class Client:
    """One virtual user's connection to the server, with a browser's cookie jar.

    gunicorn's sync workers close the connection after every response; ``http.client`` then
    reconnects on the next request, so a client is cheap to keep for a whole run.
    """

    def __init__(self, port: int, *, timeout: float = 60.0) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.cookies: dict[str, str] = {}

    def forget_cookies(self) -> None:
        self.cookies.clear()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent_headers = {"Accept": "application/json" if path.startswith("/api/") else "text/html"}
        body: bytes | None = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent_headers["Content-Type"] = "application/json"
        elif form is not None:
            body = urlencode(form).encode()
            sent_headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            sent_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        sent_headers.update(headers or {})
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=sent_headers)
            response = self.conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()  # a fresh connection for the next request
            return Reply(None, {}, b"", time.perf_counter() - started, type(exc).__name__)
        seconds = time.perf_counter() - started
        for raw in response.headers.get_all("Set-Cookie") or []:
            self._keep_cookie(raw)
        received = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, received, payload, seconds)

    def _keep_cookie(self, raw: str) -> None:
        jar: SimpleCookie = SimpleCookie()
        jar.load(raw)
        for name, morsel in jar.items():
            if morsel.value == "" or morsel["max-age"] == "0":
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value

    def close(self) -> None:
        self.conn.close()


# --- figures -------------------------------------------------------------------------------------

OK, EXPECTED, ERROR = "ok", "expected", "error"


@dataclass
class OpFigures:
    """What one operation (one kind of request) did during the run."""

    requests: int = 0
    ok: int = 0
    expected: int = 0  # answers that are not a success but exactly what was asked for
    errors: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, every answered request
    classified: Counter = field(default_factory=Counter)  # e.g. "412 stale If-Match"
    error_kinds: Counter = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)  # a few error answers, for the report


def error_rate(figures: OpFigures) -> float:
    """Errors per hundred requests (expected refusals are not errors)."""
    return 100 * figures.errors / figures.requests if figures.requests else 0.0


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile in milliseconds (nan when there is nothing to rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index] * 1000


class Recorder:
    """Thread-safe figures per operation: in ``order``, then in the order others first ran."""

    MAX_SAMPLES = 5

    def __init__(self, order: tuple[str, ...] = ()) -> None:
        self.ops: dict[str, OpFigures] = {name: OpFigures() for name in order}
        self._lock = threading.Lock()

    def ran(self) -> dict[str, OpFigures]:
        return {name: f for name, f in self.ops.items() if f.requests}

    def record(self, op: str, reply: Reply, outcome: str, *, label: str | None = None,
               sample: str | None = None) -> None:
        with self._lock:
            figures = self.ops.setdefault(op, OpFigures())
            figures.requests += 1
            if reply.status is not None:
                figures.latencies.append(reply.seconds)
            if outcome == OK:
                figures.ok += 1
            elif outcome == EXPECTED:
                figures.expected += 1
                figures.classified[label or str(reply.status)] += 1
            else:
                figures.errors += 1
                figures.error_kinds[label or str(reply.status or reply.error)] += 1
                if sample and len(figures.samples) < self.MAX_SAMPLES:
                    figures.samples.append(sample)

    def total(self) -> OpFigures:
        total = OpFigures()
        for figures in self.ran().values():
            total.requests += figures.requests
            total.ok += figures.ok
            total.expected += figures.expected
            total.errors += figures.errors
            total.latencies.extend(figures.latencies)
            total.classified.update(figures.classified)
            total.error_kinds.update(figures.error_kinds)
        return total

    def table(self, seconds: float) -> list[str]:
        """The per-operation table and the overall line, as text."""
        width = max([len("operation"), *(len(name) for name in self.ran())]) + 2
        header = (f"{'operation':<{width}}{'requests':>9}{'ok':>8}{'expected':>9}{'errors':>7}"
                  f"{'err %':>7}{'req/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}")
        lines = [header, "-" * len(header)]
        rows = [*self.ran().items(), ("TOTAL", self.total())]
        for name, f in rows:
            if name == "TOTAL":
                lines.append("-" * len(header))
            rate = f.requests / seconds if seconds else 0.0
            lines.append(
                f"{name:<{width}}{f.requests:>9}{f.ok:>8}{f.expected:>9}{f.errors:>7}"
                f"{error_rate(f):>7.2f}{rate:>8.1f}"
                f"{percentile(f.latencies, 0.50):>8.1f}{percentile(f.latencies, 0.95):>8.1f}"
                f"{percentile(f.latencies, 0.99):>8.1f}")
        return lines

    def as_dict(self, seconds: float) -> dict[str, Any]:
        def ms(f: OpFigures, fraction: float) -> float | None:
            value = percentile(f.latencies, fraction)
            return None if value != value else round(value, 1)  # NaN is not JSON

        def one(f: OpFigures) -> dict[str, Any]:
            return {"requests": f.requests, "ok": f.ok, "expected": f.expected,
                    "errors": f.errors, "error_rate_pct": round(error_rate(f), 3),
                    "req_per_s": round(f.requests / seconds, 2) if seconds else 0.0,
                    "p50_ms": ms(f, 0.50), "p95_ms": ms(f, 0.95), "p99_ms": ms(f, 0.99),
                    "classified": dict(f.classified), "error_kinds": dict(f.error_kinds)}

        return {"operations": {name: one(f) for name, f in self.ran().items()},
                "total": one(self.total())}


# --- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nothing listens on right now, on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_process(args: list[str], *, cwd: Path, env: dict[str, str],
                  log_path: Path) -> subprocess.Popen:
    """A child in its own process group (stopped with its own children), output to a log."""
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(proc: subprocess.Popen, *, grace: float = 20.0) -> None:
    """SIGTERM to the child's process group (warm shutdown), SIGKILL if it outlives ``grace``."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for_http(port: int, proc: subprocess.Popen, *, path: str = "/healthz",
                  successes: int = 4, timeout: float = 90.0) -> None:
    """``successes`` 200s in a row from ``path`` (spread over the server's workers)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < successes:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready after {timeout:.0f} s")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            streak = streak + 1 if response.status == 200 else 0
        except (OSError, http.client.HTTPException):
            streak = 0
            time.sleep(0.2)
        finally:
            conn.close()
