"""Speech layer shared by avatar, NPC and personalization: ASR (Whisper), TTS (Piper + WORLD), prosody.

Submodules load their models lazily, so importing this package is cheap:
``gaiverse.speech.asr`` (Transcriber, StreamingTranscriber), ``gaiverse.speech.tts`` (Synthesizer,
VoiceSettings, to_wav_bytes) and ``gaiverse.speech.prosody`` (prosody).
"""
