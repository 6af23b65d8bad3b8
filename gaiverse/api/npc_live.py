"""Real-time NPC conversation over a WebSocket: ``/npc/ws?npc=<id>``. Implements NPC-c1, NPC-c2, NPC-d1.

Browsers cannot set headers on a WebSocket, so the API key comes either as ``?key=`` or in the
first message ``{"type": "auth", "key": "gv_..."}`` (the web terminal uses the message, which
keeps the key out of URLs and logs). Every later message is JSON, validated against the input
schema below; a bad one gets an ``error`` event naming the field and the socket stays open.
Each connection owns one ``NpcSession`` whose models are the Ray actors of
``ray_actors/npc_runtime.py``; turns run in a worker thread and their events are forwarded as
soon as they are produced.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import threading
import time
from typing import Annotated, Any, Literal, Union

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from gaiverse.api.errors import one_line
from gaiverse.api.keys import find_user_by_key

log = logging.getLogger(__name__)

router = APIRouter(tags=["npc"])

NPC_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_MESSAGE_BYTES = 1_000_000
AUTH_TIMEOUT_S = 15.0
POLICY_VIOLATION = 1008


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuthIn(_In):
    type: Literal["auth"]
    key: str = Field(min_length=1, max_length=512)


class TextIn(_In):
    type: Literal["text"]
    text: str = Field(min_length=1, max_length=500)


class AudioIn(_In):
    type: Literal["audio"]
    pcm: str = Field(min_length=4, max_length=700_000, description="base64 of PCM16 LE mono samples")
    sample_rate: int = Field(16000, ge=8000, le=48000)


class EndOfSpeechIn(_In):
    type: Literal["end_of_speech"]


class HciIn(_In):
    type: Literal["hci"]
    kind: Literal["click", "hover", "gamepad", "key", "drop", "stick"]
    target_kind: Literal["npc", "object", "item", "none"] | None = None
    target: str | None = Field(None, max_length=120)
    button: int | str | None = None
    axes: list[float] | None = Field(None, min_length=2, max_length=2)


class PingIn(_In):
    type: Literal["ping"]


InMessage = Annotated[Union[AuthIn, TextIn, AudioIn, EndOfSpeechIn, HciIn, PingIn], Field(discriminator="type")]
IN_MESSAGE = TypeAdapter(InMessage)


def parse_message(raw: str) -> dict[str, Any]:
    """One client message -> a session input event; ValueError with a one-line reason."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message larger than {MAX_MESSAGE_BYTES} bytes: send audio in smaller chunks")
    try:
        message = IN_MESSAGE.validate_json(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise ValueError(one_line(f"`{where}`: {first['msg']}")) from None
    event = message.model_dump(exclude_none=True)
    if isinstance(message, AudioIn):
        try:
            event["pcm"] = base64.b64decode(message.pcm, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("`pcm` must be base64 of 16-bit PCM samples") from None
    return event


_runtime_lock = threading.Lock()


def npc_runtime(services) -> Any:
    """The app's ``NpcRuntime`` (actors on the configured Ray), created on the first connection."""
    with _runtime_lock:
        runtime = services.extras.get("npc_runtime")
        if runtime is None:
            from ray_actors.npc_runtime import NpcRuntime

            runtime = NpcRuntime(services.settings)
            runtime.ready()
            services.extras["npc_runtime"] = runtime
        return runtime


def find_npc(services, user, npc_id: str) -> tuple[Any, dict[str, Any] | None, str | None]:
    """(persona, voice, glb key) of one of the user's generated NPCs; (None, None, None) for a preset persona.

    Generated NPCs are versions of ``npc/<user id>/<npc id>`` in the catalog (``gaiverse/api/npcs.py``);
    LookupError when ``npc_id`` is neither a preset nor one of the user's NPCs.
    """
    from gaiverse.npc.generation import NpcProfile
    from gaiverse.npc.persona import PersonaRegistry

    versions = services.catalog.versions(f"npc/{user.user_id}/{npc_id}")
    if not versions:
        presets = PersonaRegistry.load().personas
        if npc_id in presets:
            return None, None, None
        raise LookupError(f"no NPC {npc_id!r}: use a preset ({', '.join(sorted(presets))}) or one of your NPCs")
    manifest = json.loads(services.store.get_bytes(versions[-1].manifest_key))
    profile = NpcProfile.from_dict(json.loads(services.store.get_bytes(manifest["assets"]["profile"]["key"])))
    return profile.persona(), profile.voice, manifest["assets"].get("glb", {}).get("key")


def forget_npc_memory(user_id: str) -> bool:
    """Erase a user's per-NPC dialogue memory held by the dialogue actor (part of ``DELETE /personalization/data``).

    True when the actor forgot them. Never starts Ray: when this process is not connected (the NPC
    socket was never used here), nothing is called and False is returned; so is a failed call,
    logged, because the rest of the erasure must still happen.
    """
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    try:
        from ray_actors.npc_runtime import forget_user

        return forget_user(user_id)
    except Exception:  # noqa: BLE001 - reported as not forgotten; the erasure goes on
        log.exception("the NPC dialogue actor could not forget a user")
        return False


def _event(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "turn": 0, **data, "t": {"at": round(time.time(), 4), "since_input_ms": 0.0}}


@router.websocket("/npc/ws")
async def npc_socket(websocket: WebSocket, npc: str = "sage", key: str | None = None) -> None:
    """Talk with NPC ``npc``: send text, audio chunks + end_of_speech and HCI signals; receive typed events."""
    await websocket.accept()
    services = websocket.app.state.services
    try:
        if not NPC_ID.match(npc):
            await _refuse(websocket, f"`npc` must be an NPC id (lower-case letters, digits, _ or -), got {npc!r}")
            return
        user = await _authenticate(websocket, services, key)
        if user is None:
            return
        try:
            persona, voice, glb = await run_in_threadpool(find_npc, services, user, npc)
        except LookupError as err:
            await _refuse(websocket, str(err))
            return
        await websocket.send_json(_event("state", state="loading", npc_id=npc))
        try:
            runtime = await run_in_threadpool(npc_runtime, services)
            profile = await run_in_threadpool(runtime.describe, npc, persona)
        except Exception as err:  # noqa: BLE001 - the client must learn why the NPC cannot talk
            log.exception("NPC runtime unavailable")
            await _refuse(websocket, one_line(f"NPC models unavailable: {type(err).__name__}: {err}"), code=1011)
            return
        from gaiverse.npc.session import NpcSession

        profile.update(glb=glb, voice=voice or profile.get("voice"))
        session = NpcSession(user.user_id, npc, runtime.dialogue, runtime.asr, runtime.tts, voice=profile["voice"],
                             persona=persona)
        await websocket.send_json(_event("state", state="ready", npc=profile, speech=runtime.tts is not None,
                                         user=user.name))
        try:
            await _serve(websocket, session)
        finally:
            session.close()
    except WebSocketDisconnect:
        return


async def _authenticate(websocket: WebSocket, services, key: str | None):
    if key is None:
        try:
            raw = await asyncio.wait_for(websocket.receive_text(), AUTH_TIMEOUT_S)
            message = IN_MESSAGE.validate_json(raw)
        except asyncio.TimeoutError:
            await _refuse(websocket, f"no `auth` message within {AUTH_TIMEOUT_S:g} s")
            return None
        except ValidationError:
            message = None
        if not isinstance(message, AuthIn):
            await _refuse(websocket, "missing API key: send {\"type\": \"auth\", \"key\": ...} first or use ?key=")
            return None
        key = message.key
    user = await run_in_threadpool(find_user_by_key, services.catalog, key)
    if user is None:
        await _refuse(websocket, "invalid API key")
    return user


async def _refuse(websocket: WebSocket, message: str, code: int = POLICY_VIOLATION) -> None:
    await websocket.send_json(_event("error", message=message, fatal=True))
    await websocket.close(code=code, reason=message[:120])


async def _serve(websocket: WebSocket, session) -> None:
    """Read messages one by one; each input event's output events are sent as they are produced."""
    loop = asyncio.get_running_loop()
    while True:
        raw = await websocket.receive_text()
        received = time.time()
        try:
            event = parse_message(raw)
        except ValueError as err:
            await websocket.send_json(_event("error", message=str(err)))
            continue
        if event["type"] == "ping":
            await websocket.send_json(_event("pong"))
            continue
        if event["type"] == "auth":
            await websocket.send_json(_event("error", message="already authenticated"))
            continue
        queue: asyncio.Queue = asyncio.Queue()

        def run() -> None:
            try:
                for out in session.handle(event, received_at=received):
                    loop.call_soon_threadsafe(queue.put_nowait, out)
            except Exception as err:  # noqa: BLE001 - report to the client, keep the connection
                log.exception("NPC turn failed")
                loop.call_soon_threadsafe(queue.put_nowait, _event("error", message=one_line(
                    f"the NPC could not answer: {type(err).__name__}: {err}")))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = loop.run_in_executor(None, run)
        while (out := await queue.get()) is not None:
            await websocket.send_text(json.dumps(out, ensure_ascii=False))
        await worker
