"""Edit-distance error rates for recognisers: word error rate (ASR) and character error rate (OCR).

The tests and ``benchmarks/speech_vision.py`` judge Whisper and Tesseract with the same definitions,
so a bound in a test and a figure in the benchmark table mean the same thing.
"""

from __future__ import annotations

from typing import Sequence


def edit_rate(reference: Sequence, hypothesis: Sequence) -> float:
    """Levenshtein distance between two sequences / reference length (0 = identical)."""
    row = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hypothesis, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(1, len(reference))


def normalise_words(text: str) -> list[str]:
    """Lower-cased words with punctuation dropped ("Don't!" -> ["dont"]): what WER compares."""
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower().replace("'", "")).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER after lower-casing and stripping punctuation."""
    return edit_rate(normalise_words(reference), normalise_words(hypothesis))


def char_error_rate(reference: str, hypothesis: str) -> float:
    """CER over characters with runs of whitespace collapsed to one space."""
    return edit_rate(" ".join(reference.split()), " ".join(hypothesis.split()))
