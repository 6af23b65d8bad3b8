"""Request and response bodies of the personalization routes (PER-a1..PER-f1), apart from the shared schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

SESSION_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
TASK_ID_PATTERN = r"^[A-Za-z0-9_.~-]{1,200}$"
PurposeName = Literal["interactions", "media", "personalization", "analytics"]
TaskEventName = Literal["accept", "complete", "abandon"]
ModalityName = Literal["text", "audio", "image", "video"]


class TextInteractionIn(BaseModel):
    text: str = Field(min_length=1, max_length=4000, examples=["I love exploring ruins, but no combat please"])
    """What the user says (typed, or transcribed by the terminal)."""
    session_id: str | None = Field(default=None, pattern=SESSION_PATTERN)
    """Groups the inputs of one sitting; your own name space."""


class InteractionOut(BaseModel):
    interaction_id: int
    ts: datetime
    modality: str
    event: str
    text: str
    item_id: str | None
    session_id: str | None
    features: dict[str, Any]
    """Derived features: text statistics; image colours and brightness; audio duration, energy, pitch."""
    has_media: bool
    """Whether encrypted media is stored with it (GET .../media returns it)."""


class ConsentEntryOut(BaseModel):
    purpose: str
    granted: bool
    policy_version: str
    recorded_at: datetime


class ConsentOut(BaseModel):
    current: dict[str, bool]
    """Purpose -> granted now (nothing is granted until you say so)."""
    history: list[ConsentEntryOut]
    purposes: dict[str, str]
    """What each purpose allows."""
    policy_version: str


class TagScoreOut(BaseModel):
    tag: str
    score: float


class ProfileOut(BaseModel):
    description: str
    """The short personal description in words (PER-c1)."""
    interests: list[TagScoreOut]
    aversions: list[TagScoreOut]
    play_style: dict[str, float]
    difficulty: float
    length_minutes: float
    social: float
    """0 solo .. 1 with others."""
    modality_counts: dict[str, int]
    n_inputs: int
    n_sessions: int
    accepted: list[str]
    completed: list[str]
    abandoned: list[str]


class TaskOut(BaseModel):
    task_id: str
    title: str
    description: str
    tags: list[str]
    kind: str
    difficulty: int
    length_minutes: int
    social: str
    relevance: float
    """Authored relevance in [0, 1]."""
    observed_relevance: float
    """Relevance after observed engagement."""
    rewards: dict[str, Any]
    requirements: dict[str, Any]
    location: str | None
    npcs: list[str]
    items: list[str]
    monsters: list[str]
    provenance: str
    """authored, imported or generated."""
    provenance_source: str
    made_for_you: bool
    from_tasks: list[str]


class SearchHitOut(BaseModel):
    score: float
    task: TaskOut


class RecommendationOut(BaseModel):
    task: TaskOut
    score: float
    reason: str
    """Why it is recommended, in words."""
    parts: dict[str, float]
    adjustments: list[str]
    """What was changed in the task for you (difficulty, length, rewards)."""
    original_task_id: str


class QuestStepOut(BaseModel):
    action: str
    text: str
    refs: dict[str, str]


class QuestOut(BaseModel):
    task: TaskOut
    motivation: str
    strategy: str
    steps: list[QuestStepOut]


class TaskEventOut(BaseModel):
    interaction_id: int
    event: str
    task: TaskOut


class ErasureOut(BaseModel):
    erased: bool
    interactions: int
    media_objects: int
    uploads: int
    """Your uploaded files (/uploads) deleted from the object store."""
    consents: int
    tasks: int
    """Tasks generated or adjusted for you."""
    catalog_rows: int
    knowledge_passages: int = 0
    """Your additions to the NPC knowledge base (/knowledge), deleted and the file rewritten."""
    npc_memory_forgotten: bool = False
    """The live NPC dialogue actor dropped what NPCs remembered of you; False when this API process is
    not connected to Ray (its NPC socket was never used), see docs/PRIVACY.md."""
    account_deleted: bool
    """Your API key no longer works."""
