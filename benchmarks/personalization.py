"""Personalization load benchmark (PER-g1): many users, many tasks, 200 concurrent clients against the real API.

1. Generates a synthetic population — SYNTHETIC, not real logs, but shaped like them: user activity
   log-normal (a few heavy users, a long tail), task popularity Zipf (s=1.1), every user with 2-3
   favourite tags that draw 60 % of their task events, events view 50 % / accept 25 % / complete 18 % /
   abandon 7 %, times over the last 60 days. Tasks carry 2-4 tags from the preference lexicon and
   384-dim hashing embeddings (float32; the repository's own embedder, so live messages embed alike).
2. Bulk-loads it in a few DuckDB statements from pandas frames (no row-by-row inserts).
3. Starts the real API (uvicorn subprocess, 127.0.0.1, the same ``create_app``) on that data.
4. Measures the named baseline in the same run: the pre-existing per-request path
   (``Recommender``: per-task Python scoring after a hybrid search over every task) against the
   indexed path, in-process on the same data and users.
5. Runs ``--clients`` closed-loop clients for ``--duration`` s from one client process (asyncio on uvloop,
   raw keep-alive HTTP/1.1 streams: a cheap client, so it does not take the server's CPU): recommendations
   ~70 %, own history ~10 %, interactions ~20 % (text messages and task events, each with an
   Idempotency-Key; a failed write is retried with the same key). Each client waits ``--think`` s
   (exponential) between requests; one phase per value (default 2 s and 20 s), all against the same
   server. Latency is reported twice: as the client saw it, and inside the app (``Server-Timing``
   header, GAIVERSE_SERVER_TIMING) — the difference is queueing for the CPU/event loop and transport.
   Server and client CPU per request and the host's load average are recorded per phase, because the
   machine is shared (other jobs make the numbers pessimistic). ``--profile PATH`` py-spies the API.
6. Stops the API (SIGINT: the writer commits what is queued) and checks that DuckDB holds exactly
   loaded + acknowledged interactions, with no idempotency key twice.

Loopback only, bounded in time (the load phase stops itself), everything in a temporary data dir.
Usage: nice -n 10 python benchmarks/personalization.py [--users 100000 --tasks 50000 --interactions 2000000
--clients 200 --duration 60]; smoke: --users 2000 --tasks 1000 --interactions 20000 --clients 20 --duration 10.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and benchmarks/platform.py would shadow
# the standard library's platform module (imported by uuid): put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from benchmarks.report import Report, percentile  # noqa: E402
from gaiverse.config import get_settings  # noqa: E402
from gaiverse.proc import free_port  # noqa: E402

EVENTS = ["view", "accept", "complete", "abandon"]
EVENT_P = [0.50, 0.25, 0.18, 0.07]
ENGAGEMENT = {"view": "shown", "accept": "accepted", "complete": "completed", "abandon": "abandoned"}
WORDS = ["ancient", "hidden", "silver", "burning", "lost", "frozen", "whispering", "sunken", "royal", "wild"]
NOUNS = ["tower", "grove", "harbour", "crypt", "market", "bridge", "library", "caravan", "shrine", "mine"]
MESSAGES = ["I love exploring ruins", "no more combat please", "something short with friends", "I want a puzzle",
            "a hard fight against a dragon", "relaxing fishing by the lake", "a mystery in the library"]


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# 1-2: data -------------------------------------------------------------------------------
def make_tasks(rng: np.random.Generator, n: int, tags: list[str]) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Tasks with 2-4 tags (tag frequency Zipf-like), difficulty, length, setting, authored relevance."""
    tag_p = 1.0 / np.arange(1, len(tags) + 1) ** 0.8
    tag_p /= tag_p.sum()
    rows, task_tags = [], []
    for i in range(n):
        chosen = sorted(set(rng.choice(len(tags), size=rng.integers(2, 5), p=tag_p).tolist()))
        task_tags.append(np.array(chosen))
        rows.append({"task_id": f"syn-{i:06d}", "tags": [tags[j] for j in chosen],
                     "title": f"The {WORDS[i % 10]} {NOUNS[(i // 10) % 10]} #{i}",
                     "difficulty": int(rng.integers(1, 6)), "length_minutes": int(rng.choice([10, 20, 30, 45, 60, 90])),
                     "social": str(rng.choice(["solo", "group", "either"])), "relevance": float(rng.uniform(0.3, 0.9))})
    return pd.DataFrame(rows), task_tags


def make_interactions(rng: np.random.Generator, n: int, n_users: int, task_tags: list[np.ndarray], n_tags: int):
    """(user index, task index, event, ts) arrays: log-normal activity, Zipf popularity, tag affinities."""
    n_tasks = len(task_tags)
    activity = rng.lognormal(0.0, 1.0, n_users)
    user = rng.choice(n_users, size=n, p=activity / activity.sum())
    popularity = 1.0 / np.arange(1, n_tasks + 1) ** 1.1
    popularity = popularity[rng.permutation(n_tasks)]
    task = rng.choice(n_tasks, size=n, p=popularity / popularity.sum())
    favourite = rng.integers(0, n_tags, size=(n_users, 3))
    by_affinity = rng.random(n) < 0.6
    wanted = favourite[user, rng.integers(0, 3, size=n)]
    postings = [[] for _ in range(n_tags)]
    for t, carried in enumerate(task_tags):
        for j in carried:
            postings[j].append(t)
    for j in range(n_tags):  # within a favourite tag, popular tasks are still picked more
        rows = np.flatnonzero(by_affinity & (wanted == j))
        if len(rows) and postings[j]:
            cand = np.array(postings[j])
            p = popularity[cand] / popularity[cand].sum()
            task[rows] = cand[rng.choice(len(cand), size=len(rows), p=p)]
    event = rng.choice(len(EVENTS), size=n, p=EVENT_P)
    now = datetime.now(timezone.utc)
    seconds = rng.integers(60, 60 * 86400, size=n)
    ts = pd.to_datetime(now.timestamp() - seconds, unit="s", utc=True)
    return user, task, event, ts


def bulk_load(args, settings, accounts: list[str], keyring) -> dict:
    """Create the schema through the service, then load tasks, users, interactions, consents, keys in bulk."""
    import duckdb

    from gaiverse.personalization.embedding import HashingEmbedder
    from gaiverse.personalization.preference_analysis import TAG_LEXICON
    from gaiverse.personalization.service import PersonalizationService
    from gaiverse.personalization.task_repository import Engagement, Provenance, Task, _task_to_row

    began = time.perf_counter()
    service = PersonalizationService.from_settings(settings)
    service.close()
    rng = np.random.default_rng(0)
    tags = sorted(TAG_LEXICON)
    tasks, task_tags = make_tasks(rng, args.tasks, tags)
    user_ids = [keyring.pseudonym(a) for a in accounts] + [f"u-syn{i:07d}" for i in range(args.users - len(accounts))]
    user, task, event, ts = make_interactions(rng, args.interactions, args.users, task_tags, len(tags))
    generated = time.perf_counter() - began
    counts = np.zeros((args.tasks, len(EVENTS)), dtype=np.int64)
    np.add.at(counts, (task, event), 1)
    embedder = HashingEmbedder()
    objects = []
    for i, row in enumerate(tasks.itertuples()):
        engagement = Engagement({ENGAGEMENT[e]: int(counts[i, k]) for k, e in enumerate(EVENTS)})
        objects.append(Task(row.task_id, row.title, f"A synthetic {row.social} task about {', '.join(row.tags)}.",
                            list(row.tags), relevance=row.relevance, difficulty=row.difficulty,
                            length_minutes=row.length_minutes, social=row.social,
                            provenance=Provenance("imported", "benchmark synthetic"), engagement=engagement))
    vectors = embedder.embed([t.text for t in objects])
    task_frame = pd.DataFrame([_task_to_row(t) for t in objects])
    task_frame["embedding"] = list(vectors)
    inter = pd.DataFrame({
        "user_id": np.asarray(user_ids, dtype=object)[user],
        "ts": ts, "event": np.asarray(EVENTS, dtype=object)[event],
        "item_id": tasks["task_id"].to_numpy(dtype=object)[task]})
    users = pd.DataFrame({"user_id": user_ids})
    now = datetime.now(timezone.utc)
    consents = pd.DataFrame([(keyring.pseudonym(a), p) for a in accounts
                             for p in ("interactions", "media", "personalization", "analytics")],
                            columns=["subject", "purpose"])
    wrapped = pd.DataFrame({"subject": [keyring.pseudonym(a) for a in accounts],
                            "wrapped": [keyring.wrap(keyring.pseudonym(a), os.urandom(32)) for a in accounts]})
    prepared = time.perf_counter() - began - generated
    loaded_at = time.perf_counter()
    con = duckdb.connect(str(settings.personalization_path))
    try:
        for name, frame in (("bench_tasks", task_frame), ("bench_users", users), ("bench_inter", inter),
                            ("bench_consents", consents), ("bench_keys", wrapped)):
            con.register(name, frame)
        con.execute("BEGIN")
        con.execute(f"INSERT INTO tasks SELECT task_id, data, provenance_kind, created_at, "
                    f"embedding::FLOAT[{embedder.dim}] FROM bench_tasks")
        con.execute("INSERT INTO users SELECT user_id, ?, '{}' FROM bench_users", [now])
        # ids from the table's own sequence (ordered by time), so live writes continue after them
        con.execute("INSERT INTO interactions (user_id, ts, modality, event, item_id, features, source) "
                    "SELECT user_id, ts, 'text', event, item_id, '{}', 'benchmark' FROM bench_inter ORDER BY ts")
        con.execute("INSERT INTO consents SELECT subject, purpose, TRUE, '2026-03', ? FROM bench_consents", [now])
        con.execute("INSERT INTO subject_keys SELECT subject, wrapped, ? FROM bench_keys", [now])
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return {"generate_s": generated, "prepare_s": prepared, "load_s": time.perf_counter() - loaded_at,
            "file_mb": settings.personalization_path.stat().st_size / 2**20, "task_ids": tasks["task_id"].tolist()}


def make_accounts(settings, n: int) -> list[tuple[str, str]]:
    """API accounts (user id, key) written to the catalog in one transaction, as ``create_user`` would."""
    from gaiverse.api.keys import ensure_admin, hash_key, new_key
    from storage.catalog import Catalog

    catalog = Catalog(settings.catalog_path)
    ensure_admin(settings, catalog)
    accounts = [(str(uuid.uuid4()), new_key()) for _ in range(n)]
    now = datetime.now(timezone.utc)
    with catalog.write() as con:
        con.executemany("INSERT INTO users (user_id, name, key_hash, key_prefix, is_admin, created_at) "
                        "VALUES (?, ?, ?, ?, FALSE, ?)",
                        [[uid, f"bench-{i}", hash_key(key), key[:10], now] for i, (uid, key) in enumerate(accounts)])
    return accounts


# 4: the named baseline, in-process -------------------------------------------------------
def compare_paths(settings, accounts: list[tuple[str, str]], n: int, report: Report) -> dict:
    """Index build time and per-recommendation time of the indexed path vs the pre-existing per-task path."""
    from gaiverse.personalization.recommender import Recommender
    from gaiverse.personalization.service import PersonalizationService

    began = time.perf_counter()
    service = PersonalizationService.from_settings(settings)
    start_s = time.perf_counter() - began
    old = Recommender(service.repository, service.personalizer.config.recommender)
    fast, slow, overlap = [], [], []
    service_time = []
    for account, _ in random.Random(2).sample(accounts, min(len(accounts), 300)):  # cold and warm profiles
        t0 = time.perf_counter()
        service.recommend(account, 10)
        service_time.append(time.perf_counter() - t0)
    for account, _ in random.Random(1).sample(accounts, n):
        profile = service.personalizer.profile(service.subject(account))
        t0 = time.perf_counter()
        a = service.personalizer.recommender.recommend(profile, 10)
        t1 = time.perf_counter()
        b = old.recommend(profile, 10)
        t2 = time.perf_counter()
        fast.append(t1 - t0)
        slow.append(t2 - t1)
        overlap.append(len({r.original_task_id for r in a} & {r.original_task_id for r in b}) / 10)
    gc_pause = full_collection_ms()
    service.close()
    report.add("recommend, in-process: indexed (all tasks scored)", fast, baseline=slow,
               baseline_name="per-task path", goal="baseline measured in this run")
    report.add("service.recommend, in-process, 300 users (first + later calls)", service_time,
               goal="p99 < 50 ms", p99_ms=round(percentile(service_time, 99) * 1e3, 1))
    return {"service_start_s": round(start_s, 1), "top10_overlap_with_baseline": round(float(np.mean(overlap)), 3),
            "service_recommend_p99_ms": round(percentile(service_time, 99) * 1e3, 1), **gc_pause}


def full_collection_ms() -> dict:
    """How long one full (generation 2) garbage collection pauses this process with the service loaded,
    as the API process would be without ``gc.freeze`` (create_app freezes the start-up heap), and after it."""
    tracked = len(gc.get_objects())
    t0 = time.perf_counter()
    gc.collect()
    unfrozen = time.perf_counter() - t0
    gc.freeze()
    t0 = time.perf_counter()
    gc.collect()
    frozen = time.perf_counter() - t0
    gc.unfreeze()
    return {"gc_tracked_objects": tracked, "gc_full_collection_ms": round(unfrozen * 1e3, 1),
            "gc_full_collection_after_freeze_ms": round(frozen * 1e3, 1)}


# 5: the load -------------------------------------------------------------------------------
class Load:
    """Counters and latencies of the load phase: client-observed, and server-side from ``Server-Timing``."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = {"recommendations": [], "history": [], "interaction": []}
        self.server: dict[str, list[float]] = {k: [] for k in self.latency}
        self.errors: dict[str, int] = {k: 0 for k in self.latency}
        self.statuses: dict[str, int] = {}
        """Why first attempts failed: HTTP status or exception name, with counts."""
        self.acked: set[str] = set()
        self.retries = 0


class Connection:
    """One keep-alive HTTP/1.1 connection over raw asyncio streams.

    Why not httpx: the client shares the 2 cores with the server, and httpx costs ~1 ms of CPU per request
    in the client process, which then competes with the server it measures. This costs tens of
    microseconds; it speaks just enough HTTP for these routes (uvicorn always sends Content-Length).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_used = 0.0

    IDLE_REOPEN_S = 4.0
    """uvicorn closes keep-alive connections idle for 5 s; like a browser, open a new one after a long pause
    instead of sending on a connection the server is closing (that would count as an error)."""

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes | None = None,
                      timeout: float = 30.0) -> tuple[int, float | None]:
        """(status, server-side ms or None); raises OSError/asyncio errors (the connection is then dropped)."""
        try:
            async with asyncio.timeout(timeout):
                if self.writer is not None and time.monotonic() - self.last_used > self.IDLE_REOPEN_S:
                    self.close()
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                         *(f"{k}: {v}" for k, v in headers.items())]
                if body is not None:
                    lines.append("Content-Type: application/json")
                if method != "GET":
                    lines.append(f"Content-Length: {len(body or b'')}")
                self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
                head = await self.reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length, server_ms, close = 0, None, False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"server-timing":
                        server_ms = float(value.split(b"dur=")[1].split(b",")[0])
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                await self.reader.readexactly(length)
                self.last_used = time.monotonic()
                if close:
                    self.close()
                return status, server_ms
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def client(host: str, port: int, accounts, task_ids, load: Load, deadline: float, think: float,
                 rng: random.Random) -> None:
    """A closed-loop user: wait Exp(think) s, send one request, wait for the answer, repeat."""
    conn = Connection(host, port)
    while time.monotonic() < deadline:
        pause = rng.expovariate(1.0 / think) if think > 0 else 0
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))  # the phase ends on time
        if time.monotonic() >= deadline:
            break
        _, key = rng.choice(accounts)
        headers = {"X-API-Key": key}
        roll, body, method, idem = rng.random(), None, "GET", None
        if roll < 0.7:
            op, path = "recommendations", "/personalization/recommendations?k=10"
        elif roll < 0.8:
            op, path = "history", "/personalization/interactions?limit=50"
        else:
            op, method, idem = "interaction", "POST", uuid.uuid4().hex
            headers["Idempotency-Key"] = idem
            if rng.random() < 0.5:
                path, body = "/personalization/interactions", json.dumps({"text": rng.choice(MESSAGES)}).encode()
            else:
                path = f"/personalization/tasks/{rng.choice(task_ids)}/{rng.choice(['accept', 'complete', 'abandon'])}"
        for attempt in range(3 if op == "interaction" else 1):  # writes retried with the same key
            began = time.perf_counter()
            server_ms = None
            try:
                status, server_ms = await conn.request(method, path, headers, body)
                ok, why = status < 300, str(status)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as err:
                ok, why = False, type(err).__name__
            if attempt == 0:
                load.latency[op].append(time.perf_counter() - began)
                if server_ms is not None:
                    load.server[op].append(server_ms / 1e3)
            if ok:
                if op == "interaction":
                    load.acked.add(idem)
                break
            load.errors[op] += attempt == 0
            load.retries += attempt > 0
            load.statuses[f"{op} {why}"] = load.statuses.get(f"{op} {why}", 0) + 1
    conn.close()


async def run_load(host: str, port: int, accounts, task_ids, clients: int, duration: float, think: float) -> Load:
    load = Load()
    deadline = time.monotonic() + duration
    await asyncio.gather(*(client(host, port, accounts, task_ids, load, deadline, think, random.Random(i))
                           for i in range(clients)))
    return load


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_phase(host: str, port: int, accounts, task_ids, clients: int, duration: float, think: float,
              server_pid: int) -> tuple[Load, dict]:
    """One load phase in this (client) process, on uvloop when installed; with CPU and load average."""
    gc.collect()
    gc.freeze()  # the client's own big heap (data generation) must not pause it mid-phase
    cpu0, server0, load0 = time.process_time(), cpu_seconds(server_pid), os.getloadavg()
    began = time.perf_counter()
    coro = run_load(host, port, accounts, task_ids, clients, duration, think)
    try:
        import uvloop

        load = uvloop.run(coro)
    except ImportError:
        load = asyncio.run(coro)
    wall = time.perf_counter() - began
    n = sum(len(v) for v in load.latency.values())
    stats = {"wall_s": round(wall, 1), "requests": n,
             "server_cpu_ms_per_request": round((cpu_seconds(server_pid) - server0) / max(n, 1) * 1e3, 2),
             "client_cpu_ms_per_request": round((time.process_time() - cpu0) / max(n, 1) * 1e3, 3),
             "server_cpu_cores_used": round((cpu_seconds(server_pid) - server0) / wall, 2),
             "loadavg_1min_before_after": [round(load0[0], 1), round(os.getloadavg()[0], 1)]}
    gc.unfreeze()
    return load, stats


CLIENT_MODEL = ("closed loop: each of --clients asyncio coroutines in one client process (uvloop) waits an "
                "exponential think time of mean --think s, sends one request over its own keep-alive HTTP/1.1 "
                "connection (raw asyncio streams) and waits for the answer; client and server share the host's "
                "cores. Past saturation a closed loop offers less load (the clients wait), so latencies there "
                "are queueing, and throughput is the capacity.")


def profile_server(out: Path, pid: int, duration: float) -> subprocess.Popen | None:
    """py-spy record of the API process (all threads, raw stacks) for most of a phase, in the background."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("--profile: py-spy not found, no profile", flush=True)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(max(1, int(duration) - 2)),
                             "--rate", "100", "--format", "raw", "--threads", "--nonblocking", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_api(settings, env: dict) -> subprocess.Popen:
    log = open(settings.data_dir / "api.log", "w")
    return subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "gaiverse.api.app:create_app",
                             "--host", "127.0.0.1", "--port", str(settings.api_port), "--log-level", "warning",
                             "--no-access-log", "--loop", "auto", "--http", "auto"],
                            env={**env, "GAIVERSE_SERVER_TIMING": "true"}, stdout=log, stderr=subprocess.STDOUT,
                            cwd=str(_HERE.parent))


def wait_ready(base: str, key: str, proc: subprocess.Popen, timeout: float = 900) -> float:
    import httpx

    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with {proc.returncode} while starting")
        try:
            if httpx.get(base + "/personalization/consent", headers={"X-API-Key": key}, timeout=5).status_code == 200:
                return time.monotonic() - began
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"API not ready within {timeout} s")


def wait_settled(pid: int, timeout: float = 600, window: float = 3.0, busy: float = 0.1) -> float:
    """Wait until the API's start-up work in background threads (the NPC knowledge base loads its prior
    and warms an embedder after the port opens) is done: CPU use under ``busy`` cores over ``window`` s."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        before = cpu_seconds(pid)
        time.sleep(window)
        if (cpu_seconds(pid) - before) / window < busy:
            break
    return time.monotonic() - began


def auth_floor(base: str, key: str, n: int = 100) -> list[float]:
    """Latency of GET /me: the per-request key look-up every authenticated route pays."""
    import httpx

    out = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for _ in range(n):
            began = time.perf_counter()
            http.get("/me", headers={"X-API-Key": key}).raise_for_status()
            out.append(time.perf_counter() - began)
    return out


def count_check(settings, loaded: int, acked: set[str]) -> dict:
    import duckdb

    con = duckdb.connect(str(settings.personalization_path), read_only=True)
    try:
        total = con.execute("SELECT count(*) FROM interactions").fetchone()[0]
        keys = [r[0] for r in con.execute("SELECT idempotency_key FROM interactions "
                                          "WHERE idempotency_key IS NOT NULL").fetchall()]
    finally:
        con.close()
    stored = set(keys)
    return {"loaded": loaded, "acknowledged_writes": len(acked), "in_duckdb": int(total),
            "expected": loaded + len(acked), "lost": len(acked - stored), "duplicated": len(keys) - len(stored),
            "stored_but_unacknowledged": len(stored - acked),
            "ok": total == loaded + len(acked) and not (acked - stored) and len(keys) == len(stored)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument("--accounts", type=int, default=2000, help="API accounts the clients act as")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--think", default="2,20", help="mean pause between a client's requests, s; a comma list "
                        "runs one load phase per value (e.g. saturation, then people reading their screens)")
    parser.add_argument("--baseline-requests", type=int, default=10)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the API during the first phase and "
                        "write its raw stacks here (needs py-spy)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir (DuckDB file, API log)")
    args = parser.parse_args()
    try:
        thinks = [float(t) for t in str(args.think).split(",")]
    except ValueError:
        parser.error(f"--think must be numbers separated by commas, got {args.think!r}")
    if any(t < 0 for t in thinks):
        parser.error(f"--think must be >= 0, got {args.think!r}")
    for name in ("users", "tasks", "interactions", "clients", "accounts"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if not 1 <= args.accounts <= args.users:
        parser.error(f"--accounts must be in 1..--users ({args.users}), got {args.accounts}")
    if not 1 <= args.duration <= 600:
        parser.error(f"--duration must be 1..600 s, got {args.duration}")

    tmp = Path(tempfile.mkdtemp(prefix="gaiverse-bench-personalization-"))
    os.environ.update({"GAIVERSE_DATA_DIR": str(tmp), "GAIVERSE_API_PORT": str(free_port()),
                       "GAIVERSE_S3_PORT": str(free_port()), "GAIVERSE_PREFECT_PORT": str(free_port()),
                       "RAY_AUTH_MODE": "disabled"})
    get_settings.cache_clear()
    settings = get_settings()
    from gaiverse.privacy import KeyRing

    report = Report("personalization", "duckdb", "fastapi", "uvicorn", "httpx", "numpy")
    accounts = make_accounts(settings, args.accounts)
    keyring = KeyRing.load(settings.personal_keys_dir, None)
    loaded = bulk_load(args, settings, [a for a, _ in accounts], keyring)
    task_ids = loaded.pop("task_ids")
    print(f"data: {args.users} users, {args.tasks} tasks, {args.interactions} interactions "
          f"(generated {loaded['generate_s']:.1f} s, prepared {loaded['prepare_s']:.1f} s, "
          f"bulk-loaded {loaded['load_s']:.1f} s, file {loaded['file_mb']:.0f} MB)", flush=True)
    baseline = compare_paths(settings, accounts, args.baseline_requests, report)
    print(f"in-process: {baseline}", flush=True)

    proc = start_api(settings, dict(os.environ))
    base = f"http://127.0.0.1:{settings.api_port}"
    try:
        ready_s = wait_ready(base, accounts[0][1], proc)
        settled_s = wait_settled(proc.pid)
        print(f"API answering after {ready_s:.1f} s, its start-up threads done {settled_s:.1f} s later", flush=True)
        rss_start = rss_mb(proc.pid)
        floor = auth_floor(base, accounts[0][1])
        print(f"API ready in {ready_s:.1f} s, RSS {rss_start:.0f} MB; load: {args.clients} clients, "
              f"{args.duration:.0f} s per phase, think {thinks}", flush=True)
        phases = []
        for i, think in enumerate(thinks):
            spy = profile_server(args.profile, proc.pid, args.duration) if args.profile and i == 0 else None
            load, stats = run_phase("127.0.0.1", settings.api_port, accounts, task_ids, args.clients,
                                    args.duration, think, proc.pid)
            if spy is not None:
                spy.wait(60)
            phases.append((think, load, stats))
            print(f"phase think {think:g} s: {stats}; failed first attempts: {load.statuses}", flush=True)
        rss_end = rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)  # graceful: the writer commits what is queued
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
    check = count_check(settings, args.interactions, set().union(*(load.acked for _, load, _ in phases)))

    report.add("HTTP GET /me (auth + framework floor)", floor, goal="platform cost in every request")
    ops = {}
    for think, load, stats in phases:
        for op, samples in load.latency.items():
            goal = "p99 < 50 ms" if op == "recommendations" else ""
            for side, values in (("client", samples), ("server", load.server[op])):
                if not values:
                    continue
                name = f"HTTP {op}, think {think:g} s, {side}"
                report.add(name, values, goal=goal if side == "client" else "time inside the app",
                           p99_ms=round(percentile(values, 99) * 1e3, 1))
                ops[name] = {"n": len(values), "throughput_per_s": round(len(samples) / stats["wall_s"], 1),
                             "p50_ms": round(percentile(values, 50) * 1e3, 1),
                             "p95_ms": round(percentile(values, 95) * 1e3, 1),
                             "p99_ms": round(percentile(values, 99) * 1e3, 1), "errors": load.errors[op],
                             "write_retries": load.retries, "failures": load.statuses}
    report.meta.update({"synthetic_data": "yes: log-normal activity, Zipf(1.1) task popularity, 60 % of events on "
                        "3 favourite tags; 384-dim float32 hashing embeddings",
                        "client_model": CLIENT_MODEL, "args": vars(args), "load": loaded, "in_process": baseline,
                        "api_ready_s": round(ready_s, 1), "api_settled_s": round(settled_s, 1),
                        "operations": ops,
                        "phases": {f"think {think:g} s": stats for think, _, stats in phases},
                        "api_rss_mb": {"after_start": round(rss_start), "after_load": round(rss_end)},
                        "count_check": check})
    report.finish()
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"load: {args.clients} clients, {args.duration:.0f} s per phase "
                        f"(client = observed by the client; server = Server-Timing, time inside the app)")
    for column in ("operation", "n", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"):
        table.add_column(column, justify="left" if column == "operation" else "right")
    for op, row in ops.items():
        table.add_row(op, str(row["n"]), str(row["throughput_per_s"]), str(row["p50_ms"]), str(row["p95_ms"]),
                      str(row["p99_ms"]), str(row["errors"]))
    console = Console(width=200)
    console.print(table)
    for think, _, stats in phases:
        console.print(f"think {think:g} s: server CPU {stats['server_cpu_ms_per_request']} ms/request "
                      f"({stats['server_cpu_cores_used']} cores), client CPU {stats['client_cpu_ms_per_request']} "
                      f"ms/request, load average (1 min) before/after {stats['loadavg_1min_before_after']}")
    console.print(f"client model: {CLIENT_MODEL}")
    console.print(f"API RSS: {rss_start:.0f} MB after start, {rss_end:.0f} MB after the load; count check: {check}")
    if args.keep:
        console.print(f"data kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
