"""Live NPC latency benchmark (issue 6): per stage and end to end over the real WebSocket, plus concurrency.

Starts its own S3 server, a local Ray and the API (uvicorn subprocess joined to that Ray) in a
temporary data dir, creates a user, then measures from the client's side of ``/npc/ws``:

- text turns: time to the first text token and to the first audio byte after the message is sent;
- voice turns: ASR final result after ``end_of_speech``, first token and first audio after it
  (the utterance is sent as 100 ms PCM chunks before ``end_of_speech``);
- the baseline in the same run: non-streaming, i.e. the full answer (``text_done``) and then the
  whole answer synthesised at once by the same TTS actor;
- concurrency: 1, 2, 4, 8, 12 sessions talking at once; the largest level whose p95 first audio
  stays under 2 s is the number of sessions sustained.

Each stage's distance from the ~200 ms human turn gap is printed and stored in the JSON.
Usage: nice -n 10 python benchmarks/npc.py [--turns 50] [--levels 1,2,4,8,12] [--generator extractive]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from benchmarks.report import Report, percentile  # noqa: E402
from gaiverse.config import REPO_ROOT, get_settings, prefect_env  # noqa: E402
from gaiverse.proc import free_port, spawn, stop_pid, wait_until  # noqa: E402

HUMAN_GAP_S = 0.2
TEXT_QUESTIONS = [
    "What is the armor class of a lich?", "What is the capital of Kenya?", "Who is the king of France?",
    "How much does a greataxe cost?", "What is the capital of Japan?", "Hello!", "What spell level is Fireball?",
    "How many hit points does a zombie have?", "What is the capital of Peru?", "Thanks!",
]
VOICE_QUESTIONS = ["What is the capital of Kenya?", "What is the capital of Japan?", "How much does a greataxe cost?",
                   "Who is the king of France?", "What is the capital of Peru?"]


def start_stack(data_dir: Path, generator: str):
    """S3 + local Ray here + the API subprocess joined to it; returns (base_url, admin_key, cleanup)."""
    os.environ.update({"GAIVERSE_DATA_DIR": str(data_dir), "GAIVERSE_S3_PORT": str(free_port()),
                       "GAIVERSE_PREFECT_PORT": str(free_port()), "GAIVERSE_API_PORT": str(free_port()),
                       "GAIVERSE_ADMIN_KEY": "gv_bench_admin_key_0123456789abcdef", "RAY_AUTH_MODE": "disabled",
                       "GAIVERSE_NPC_GENERATOR": generator})
    os.environ.pop("GAIVERSE_RAY_ADDRESS", None)
    get_settings.cache_clear()
    settings = get_settings()
    import ray

    from storage.s3server import start_s3_server

    s3 = start_s3_server(settings)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="gaiverse")
    port = settings.api_port
    env = {**prefect_env(settings), "GAIVERSE_RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    api = spawn("api-bench", [sys.executable, "-m", "uvicorn", "--factory", "gaiverse.api.app:create_app",
                              "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                settings.run_dir, env=env, cwd=REPO_ROOT)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(base), 120, f"API (log {api.log_path})")

    def cleanup():
        stop_pid(api.pid, "api-bench")
        ray.shutdown()
        stop_pid(s3.pid, "s3")

    return base, settings.admin_key.get_secret_value(), cleanup


def _answers(base: str) -> bool:
    import httpx

    try:
        return httpx.get(base + "/health", timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def new_key(base: str, admin_key: str, name: str) -> str:
    import httpx

    r = httpx.post(base + "/users", json={"name": name}, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30)
    r.raise_for_status()
    return r.json()["key"]


class Client:
    """One socket to /npc/ws; ``turn`` sends input events and times the answer's events on this side."""

    def __init__(self, base: str, key: str, npc: str = "sage"):
        from websockets.sync.client import connect

        self.ws = connect(base.replace("http", "ws", 1) + f"/npc/ws?npc={npc}", max_size=None)
        self.ws.send(json.dumps({"type": "auth", "key": key}))
        while True:
            e = self._recv()
            if e["type"] == "state" and e.get("state") == "ready":
                break
            if e["type"] == "error":
                raise RuntimeError(f"the NPC socket refused: {e['message']}")

    def _recv(self) -> dict:
        self.last = json.loads(self.ws.recv(timeout=900))
        return self.last

    def turn(self, messages: list[dict]) -> dict:
        """Send ``messages`` (the last one ends the input); seconds from that last send to each stage."""
        for m in messages[:-1]:
            self.ws.send(json.dumps(m))
        t0 = time.perf_counter()
        self.ws.send(json.dumps(messages[-1]))
        out: dict = {}
        while True:
            e = self._recv()
            dt = time.perf_counter() - t0
            key = {"transcript": "asr", "text_delta": "first_token", "audio": "first_audio",
                   "text_done": "text_done"}.get(e["type"])
            if key and key not in out:
                out[key] = dt
            if e["type"] == "text_done":
                out["text"] = e["text"]
            if e["type"] == "error":
                out["error"] = e["message"]
            if e["type"] == "state" and e.get("state") == "idle":
                out["done"] = dt
                return out

    def close(self) -> None:
        self.ws.close()


def voice_messages(text: str, cache: dict) -> list[dict]:
    if text not in cache:
        from gaiverse.speech.asr import resample
        from gaiverse.speech.tts import Synthesizer

        import numpy as np

        audio = Synthesizer().synthesize(text)
        x = resample(audio.pcm.astype(np.float32) / 32768.0, audio.sample_rate)
        pcm = (np.clip(np.concatenate([np.zeros(3200, np.float32), x, np.zeros(3200, np.float32)]), -1, 1)
               * 32767).astype("<i2").tobytes()
        cache[text] = [{"type": "audio", "pcm": base64.b64encode(pcm[i:i + 3200]).decode(), "sample_rate": 16000}
                       for i in range(0, len(pcm), 3200)] + [{"type": "end_of_speech"}]
    return cache[text]


def bench_sequential(report: Report, base: str, key: str, turns: int, voice_turns: int | None = None) -> dict:
    import ray

    from ray_actors.npc_runtime import TTS_ACTOR

    tts = ray.get_actor(TTS_ACTOR, namespace="gaiverse")
    client = Client(base, key)
    text, baseline = [], []
    for i in range(turns):
        r = client.turn([{"type": "text", "text": TEXT_QUESTIONS[i % len(TEXT_QUESTIONS)]}])
        text.append(r)
        t0 = time.perf_counter()
        ray.get(tts.synthesize.remote(r["text"]))  # non-streaming baseline: whole answer, then whole speech
        baseline.append(r["text_done"] + time.perf_counter() - t0)
    cache: dict = {}
    voice = [client.turn(voice_messages(VOICE_QUESTIONS[i % len(VOICE_QUESTIONS)], cache))
             for i in range(turns if voice_turns is None else voice_turns)]
    client.close()
    rows = {
        "text: first text token": ([r["first_token"] for r in text], "< 300 ms"),
        "text: first audio byte": ([r["first_audio"] for r in text], "p50 < 800 ms"),
        "voice: ASR final after end of speech": ([r["asr"] for r in voice], ""),
        "voice: first text token": ([r["first_token"] for r in voice], ""),
        "voice: first audio byte": ([r["first_audio"] for r in voice], "p50 < 1200 ms"),
    }
    gaps = {}
    for name, (samples, goal) in rows.items():
        if not samples:
            continue
        extra = {"baseline": baseline, "baseline_name": "non-streaming"} if name == "text: first audio byte" else {}
        row = report.add(name, samples, goal=goal, **extra)
        gaps[name] = {"median_minus_200ms": round(row.median - HUMAN_GAP_S * 1e3, 1),
                      "p95_minus_200ms": round(row.p95 - HUMAN_GAP_S * 1e3, 1)}
    report.add("text: whole turn (all audio sent)", [r["done"] for r in text])
    report.add("baseline non-streaming: first audio", baseline, goal="(full answer, then full TTS)")
    report.meta["distance_from_human_turn_gap_ms"] = gaps
    report.meta["voice_answers_sample"] = [r.get("text") for r in voice[:5]]
    report.meta["text_answers_sample"] = [r.get("text") for r in text[:len(TEXT_QUESTIONS)]]
    return gaps


def bench_concurrency(report: Report, base: str, admin_key: str, levels: list[int], turns_each: int) -> int:
    keys = [new_key(base, admin_key, f"bench-c{i}-{os.getpid()}") for i in range(max(levels))]
    sustained = 0
    for n in levels:
        clients = [Client(base, keys[i], npc=("sage", "innkeeper", "monster_hunter", "archmage")[i % 4])
                   for i in range(n)]
        results: list[float] = []
        lock = threading.Lock()
        barrier = threading.Barrier(n)

        def talk(c: Client, idx: int) -> None:
            barrier.wait()
            for j in range(turns_each):
                r = c.turn([{"type": "text", "text": TEXT_QUESTIONS[(idx + j) % len(TEXT_QUESTIONS)]}])
                with lock:
                    results.append(r.get("first_audio", r["done"]))

        threads = [threading.Thread(target=talk, args=(c, i)) for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in clients:
            c.close()
        p95 = percentile(results, 95)
        report.add(f"first audio with {n} concurrent sessions", results, goal="p95 < 2000 ms")
        if p95 < 2.0:
            sustained = n
    report.add("concurrent sessions sustained (p95 first audio < 2 s)", [sustained], unit="sessions", scale=1,
               goal=">= 8")
    return sustained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=50, help="text turns and voice turns (each)")
    parser.add_argument("--levels", default="1,2,4,8,12", help="concurrent sessions to ramp through ('none': skip)")
    parser.add_argument("--voice-turns", type=int, default=None, help="voice turns (default: --turns)")
    parser.add_argument("--turns-each", type=int, default=4, help="turns per session at each concurrency level")
    parser.add_argument("--generator", default="extractive", choices=["extractive", "llm", "auto"])
    args = parser.parse_args()
    levels = [] if args.levels == "none" else [int(x) for x in args.levels.split(",")]
    report = Report("npc", "ray", "faster-whisper", "piper-tts", "fastapi", "websockets", "llama-cpp-python")
    report.meta["generator"] = args.generator
    report.meta["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    report.meta["models"] = {"asr": "Whisper base int8 (faster-whisper, greedy, en)",
                             "tts": "Piper en_US-joe-medium", "embedder": "all-MiniLM-L6-v2"}
    with tempfile.TemporaryDirectory(prefix="gaiverse-npc-bench-") as tmp:
        base, admin_key, cleanup = start_stack(Path(tmp), args.generator)
        try:
            key = new_key(base, admin_key, f"bench-{os.getpid()}")
            warm = Client(base, key)  # first connection creates the actors and loads the models
            warm.turn([{"type": "text", "text": "Hello!"}])
            warm.close()
            gaps = bench_sequential(report, base, key, args.turns, args.voice_turns)
            sustained = bench_concurrency(report, base, admin_key, levels, args.turns_each) if levels else None
        finally:
            cleanup()
    report.meta["sustained_sessions"] = sustained
    report.meta["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report.finish()
    for name, gap in gaps.items():
        print(f"{name}: median {gap['median_minus_200ms']:+.0f} ms, p95 {gap['p95_minus_200ms']:+.0f} ms "
              f"from the 200 ms human turn gap")
    print(f"load average during the run: {os.getloadavg()}; median of medians: "
          f"{statistics.median(r.median for r in report.rows):.0f} ms")


if __name__ == "__main__":
    main()
