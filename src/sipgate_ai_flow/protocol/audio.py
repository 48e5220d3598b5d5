"""The audio format AI Flow plays: base64 WAV, 16 kHz, mono, 16-bit PCM (D6)."""

from __future__ import annotations

import base64
import binascii
import io
import wave
from dataclasses import dataclass

from sipgate_ai_flow.errors import AudioFormatError

__all__ = [
    "REQUIRED_CHANNELS",
    "REQUIRED_RATE",
    "REQUIRED_WIDTH",
    "WavInfo",
    "check_wav",
    "check_wav_base64",
]

REQUIRED_RATE = 16_000
REQUIRED_CHANNELS = 1
REQUIRED_WIDTH = 2  # bytes per sample: 16-bit


@dataclass(frozen=True, slots=True)
class WavInfo:
    """What a WAV file holds."""

    sample_rate: int
    channels: int
    sample_width: int
    frames: int

    @property
    def duration_ms(self) -> float:
        """Playing time in milliseconds."""
        return self.frames * 1000 / self.sample_rate


def check_wav(data: bytes) -> WavInfo:
    """Check that ``data`` is a WAV file AI Flow can play; raise :class:`AudioFormatError` if not."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            info = WavInfo(wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), wav.getnframes())
    except Exception as exc:  # wave raises RuntimeError too on some bad headers (found by fuzzing)
        raise AudioFormatError(f"not a PCM WAV file ({type(exc).__name__}: {exc})") from None
    problems = []
    if info.sample_rate != REQUIRED_RATE:
        problems.append(f"sample rate {info.sample_rate} Hz, needs {REQUIRED_RATE}")
    if info.channels != REQUIRED_CHANNELS:
        problems.append(f"{info.channels} channels, needs mono")
    if info.sample_width != REQUIRED_WIDTH:
        problems.append(f"{info.sample_width * 8}-bit samples, needs 16-bit")
    if problems:
        raise AudioFormatError("WAV must be 16 kHz, mono, 16-bit PCM; got " + ", ".join(problems))
    return info


def check_wav_base64(value: str) -> WavInfo:
    """Decode base64 and check the WAV inside, as :func:`check_wav` does."""
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AudioFormatError("audio is not valid base64") from None
    return check_wav(data)
