"""``gaiverse eval npc``: answer accuracy, hallucination, refusals and latency of NPC dialogue vs a baseline.

For a JSON-lines file of ``{"question", "expected", "accept": [...], "npc"?}`` items, each
question goes to an NPC (a fresh user per item, so items do not share memory) and to the
retrieval-only baseline (the top passage returned verbatim), in the same run. Reported per
EVAL.md: one JSON object with ``metrics`` and ``baseline`` under the same names, their
directions, and every item with the raw answers and judgements.

- accuracy: share of items judged correct (``judging.judge``: accepted answer stated; numbers
  judged on the stated value; a refusal is correct only where the item expects one);
- hallucination: share of *answers* (refusals excluded) stating a number or name that no
  knowledge-base passage retrieved for the question or the answer contains;
- refusal_rate, false_refusal_rate (refused answerable items), missed_refusal_rate (answered
  out-of-knowledge items); latency percentiles per turn.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gaiverse.npc.dialogue import AgentConfig, NpcAgent
from gaiverse.npc.generators import ExtractiveGenerator, Generator, LlamaConfig, LlamaGenerator
from gaiverse.npc.grounding import unsupported_claims
from gaiverse.npc.judging import expects_refusal, judge
from gaiverse.npc.knowledge_base import KnowledgeBase, Scope
from gaiverse.npc.memory import MemoryStore
from gaiverse.npc.persona import PersonaRegistry

log = logging.getLogger(__name__)


class EvalDataError(ValueError):
    """The QA file cannot be read; the message is one line naming the file and the problem."""


def load_qa(path: Path) -> list[dict[str, Any]]:
    """Read and check a QA JSON-lines file."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise EvalDataError(f"{path}: cannot read QA file ({err.__class__.__name__}: {err})") from None
    items = []
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip() or raw.lstrip().startswith("//"):
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as err:
            raise EvalDataError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("question"), str) or not item["question"].strip():
            raise EvalDataError(f"{path}:{lineno}: each item needs a non-empty string \"question\"")
        accept = item.get("accept", [])
        if not isinstance(accept, list) or not all(isinstance(a, (str, int, float)) for a in accept):
            raise EvalDataError(f"{path}:{lineno}: \"accept\" must be a list of strings, got {accept!r}")
        if item.get("expected") is not None and not isinstance(item["expected"], (str, int, float)):
            raise EvalDataError(f"{path}:{lineno}: \"expected\" must be a string, got {item['expected']!r}")
        items.append({"question": item["question"].strip(), "expected": item.get("expected"),
                      "accept": [str(a) for a in accept], "npc": item.get("npc")})
    if not items:
        raise EvalDataError(f"{path}: no QA items")
    return items


def _hallucinated(kb: KnowledgeBase, scope: Scope, question: str, answer: str, allowed: list[str]) -> list[str]:
    """Claims in ``answer`` found in no passage retrieved for the question or for the answer itself."""
    if not answer.strip():
        return []
    facts = [h.text for h in kb.search(question, scope, k=8)] + [h.text for h in kb.search(answer, scope, k=8)]
    return unsupported_claims(answer, facts, allowed)


def _summary(rows: list[dict], prefix: str) -> dict[str, float]:
    n = len(rows)
    answered = [r for r in rows if not r[f"{prefix}refused"]]
    answerable = [r for r in rows if not r["expects_refusal"]]
    ook = [r for r in rows if r["expects_refusal"]]
    lat = np.array([r[f"{prefix}latency_s"] for r in rows])
    out = {
        "accuracy": round(sum(r[f"{prefix}judged"] for r in rows) / n, 4),
        "hallucination": round(sum(bool(r[f"{prefix}unsupported"]) for r in answered) / len(answered), 4)
        if answered else 0.0,
        "refusal_rate": round((n - len(answered)) / n, 4),
        "false_refusal_rate": round(sum(r[f"{prefix}refused"] for r in answerable) / len(answerable), 4)
        if answerable else 0.0,
        "missed_refusal_rate": round(sum(not r[f"{prefix}refused"] for r in ook) / len(ook), 4) if ook else 0.0,
        "latency_p50_s": round(float(np.percentile(lat, 50)), 4),
        "latency_p95_s": round(float(np.percentile(lat, 95)), 4),
    }
    return out


def eval_npc(qa_path: Path, kb_path: Path, generator: Literal["extractive", "llm", "auto"] = "extractive",
             gguf: Path | None = None, limit: int | None = None) -> dict[str, Any]:
    """Run the evaluation and return the EVAL.md JSON object. Implements the NPC quality checks of issue 6."""
    started = time.perf_counter()
    items = load_qa(qa_path)[:limit] if limit else load_qa(qa_path)
    kb = KnowledgeBase(kb_path)
    try:
        kb.build_prior()
        gen, checkpoint = _generator(generator, gguf)
        personas = PersonaRegistry.load()
        memory = MemoryStore()
        agents: dict[str | None, NpcAgent] = {}
        rows = []
        for i, item in enumerate(items):
            npc = item["npc"]
            if npc not in agents:
                agents[npc] = NpcAgent(kb, personas.get(npc), memory, gen, AgentConfig())
            agent = agents[npc]
            user = f"eval-user-{i}"
            scope = Scope(user_id=user, npc_id=agent.persona.id)
            allowed = [item["question"], agent.persona.name, agent.persona.role, agent.persona.greeting]
            t0 = time.perf_counter()
            if hasattr(gen, "last_first_token_s"):
                gen.last_first_token_s = None
            reply = agent.respond(user, item["question"])
            latency = time.perf_counter() - t0
            model_first = getattr(gen, "last_first_token_s", None)
            t0 = time.perf_counter()
            top = kb.search(item["question"], scope, domains=agent.persona.domains, k=1)
            base_latency = time.perf_counter() - t0
            base_answer = top[0].text if top else ""
            verdict = judge(item["question"], reply.text, item["expected"], item["accept"], reply.refused)
            base_verdict = judge(item["question"], base_answer, item["expected"], item["accept"], not top)
            rows.append({
                "question": item["question"], "expected": item["expected"], "accept": item["accept"],
                "npc": agent.persona.id, "expects_refusal": expects_refusal(item["expected"], item["accept"]),
                "answer": reply.text, "judged": verdict.correct, "why": verdict.reason, "refused": reply.refused,
                "unsupported": [] if reply.refused else _hallucinated(kb, scope, item["question"], reply.text, allowed),
                "latency_s": round(latency, 4), "first_token_s": round(reply.seconds_to_first_token or latency, 4),
                "model_first_token_s": None if model_first is None else round(model_first, 4),
                "generator": reply.generator or "persona", "sources": reply.sources,
                "baseline_answer": base_answer, "baseline_judged": base_verdict.correct,
                "baseline_why": base_verdict.reason, "baseline_refused": not top,
                "baseline_unsupported": _hallucinated(kb, scope, item["question"], base_answer, allowed),
                "baseline_latency_s": round(base_latency, 4),
            })
            log.info("%d/%d %s -> %s", i + 1, len(items), item["question"], "ok" if verdict.correct else "WRONG")
        metrics = _summary(rows, "")
        first = [r["first_token_s"] for r in rows]
        metrics["first_token_p50_s"] = round(float(np.percentile(first, 50)), 4)
        metrics["first_token_p95_s"] = round(float(np.percentile(first, 95)), 4)
        model_first = [r["model_first_token_s"] for r in rows if r["model_first_token_s"] is not None]
        if model_first:  # the language model's own first token, after the persona lead-in was said
            metrics["model_first_token_p50_s"] = round(float(np.percentile(model_first, 50)), 4)
            metrics["model_first_token_p95_s"] = round(float(np.percentile(model_first, 95)), 4)
        metrics["generated_share"] = round(sum(r["generator"] == gen.name for r in rows) / len(rows), 4)
        baseline = {"name": "retrieval-top-passage", **_summary(rows, "baseline_")}
        return {
            "eval": "npc",
            "data": [str(qa_path)],
            "n": len(rows),
            "metrics": metrics,
            "baseline": baseline,
            "lower_is_better": {"accuracy": False, "hallucination": True, "false_refusal_rate": True,
                                "missed_refusal_rate": True, "latency_p50_s": True, "latency_p95_s": True,
                                "first_token_p50_s": True, "first_token_p95_s": True,
                                **{k: True for k in ("model_first_token_p50_s", "model_first_token_p95_s")
                                   if k in metrics}},
            "notes": {"refusal_rate": "no direction: correct refusals of out-of-knowledge items count in it; "
                                      "see false_refusal_rate and missed_refusal_rate",
                      "hallucination": "share of non-refused answers stating a number or name absent from "
                                       "the knowledge-base passages retrieved for the question or the answer"},
            "generator": gen.name,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "kb": {"path": str(kb_path), "passages": kb.count()},
            "seconds": round(time.perf_counter() - started, 2),
            "checkpoint": checkpoint,
            "items": rows,
        }
    finally:
        kb.close()


def _generator(kind: str, gguf: Path | None) -> tuple[Generator, str | None]:
    """The requested generator and the model file it uses (None for the extractive one)."""
    from gaiverse.npc.llm import llama_available

    if kind not in ("extractive", "llm", "auto"):
        raise ValueError(f"`generator` must be extractive, llm or auto, got {kind!r}")
    if kind == "extractive":
        return ExtractiveGenerator(), None
    usable = gguf is not None and Path(gguf).is_file() and llama_available()
    if not usable:
        if kind == "llm":
            raise EvalDataError(f"--generator llm needs llama-cpp-python and a GGUF file, got {gguf}")
        log.warning("no language model available (gguf=%s): using the extractive generator", gguf)
        return ExtractiveGenerator(), None
    return LlamaGenerator(LlamaConfig(model_path=Path(gguf))), str(gguf)
