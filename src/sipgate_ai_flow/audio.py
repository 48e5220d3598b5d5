"""Audio for the ``audio`` and ``mix_audio`` actions: any common file in, the WAV AI Flow plays out.

AI Flow plays base64 WAV, 16 kHz, mono, 16-bit PCM (D6). :func:`load_audio` reads a file or bytes
in that format as they are; anything else (WAV of any rate, width or channel count, FLAC, OGG,
MP3, AIFF, ...) is decoded with libsndfile, mixed down to mono and resampled with libsoxr, which
needs the ``audio`` extra: ``pip install 'sipgate-ai-flow[audio]'``. Results are cached, so a
handler may load its hold music on every call.
"""

from __future__ import annotations

import base64
import io
import os
import wave
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sipgate_ai_flow.errors import AudioFormatError
from sipgate_ai_flow.protocol.actions import Audio, MixAudio
from sipgate_ai_flow.protocol.audio import REQUIRED_RATE, WavInfo, check_wav
from sipgate_ai_flow.protocol.config import BargeInConfig

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["AudioClip", "clear_audio_cache", "load_audio"]

_CACHE_SIZE = 32
_EXTRA_HINT = "converting audio needs the audio extra: pip install 'sipgate-ai-flow[audio]'"


@dataclass(frozen=True, slots=True)
class AudioClip:
    """Audio ready for AI Flow: ``wav`` (16 kHz, mono, 16-bit PCM) and its ``base64`` text."""

    wav: bytes = field(repr=False)
    info: WavInfo
    base64: str = field(repr=False)

    @property
    def duration_ms(self) -> float:
        """Playing time in milliseconds."""
        return self.info.duration_ms

    def audio(self, *, barge_in: BargeInConfig | None = None) -> Audio:
        """An ``audio`` action that plays this clip."""
        return Audio(audio=self.base64, barge_in=barge_in)

    def mix(self, *, volume: float | None = None) -> MixAudio:
        """A ``mix_audio`` action that loops this clip under the call (``volume`` 0.0-1.0)."""
        return MixAudio(audio=self.base64, volume=volume)


def clear_audio_cache() -> None:
    """Forget every clip :func:`load_audio` has converted."""
    _load_file.cache_clear()
    _load_bytes.cache_clear()


def load_audio(source: str | os.PathLike[str] | bytes, *, max_seconds: float | None = None) -> AudioClip:
    """Load audio from a file path or bytes and make it playable by AI Flow.

    Input already in the required format is kept byte for byte; anything else is converted
    (see the module docs). Raises :class:`~sipgate_ai_flow.errors.AudioFormatError` for data that
    is not audio, holds no sound, or plays longer than ``max_seconds``; ``FileNotFoundError``
    for a missing file; ``ModuleNotFoundError`` when conversion needs the ``audio`` extra.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return _load_bytes(bytes(source), max_seconds)
    path = Path(source).resolve()
    stat = path.stat()  # FileNotFoundError says which file
    # A changed file has another mtime or size, so it misses the cache.
    return _load_file(str(path), stat.st_mtime_ns, stat.st_size, max_seconds)


@lru_cache(maxsize=_CACHE_SIZE)
def _load_file(path: str, mtime_ns: int, size: int, max_seconds: float | None) -> AudioClip:
    return _checked(_convert(Path(path).read_bytes(), path), path, max_seconds)


@lru_cache(maxsize=_CACHE_SIZE)
def _load_bytes(data: bytes, max_seconds: float | None) -> AudioClip:
    return _checked(_convert(data, "the audio bytes"), "the audio bytes", max_seconds)


def _checked(clip: AudioClip, name: str, max_seconds: float | None) -> AudioClip:
    if max_seconds is not None and clip.duration_ms > max_seconds * 1000:
        raise AudioFormatError(
            f"{name} plays {clip.duration_ms / 1000:.1f} s, longer than max_seconds={max_seconds:g}"
        )
    return clip


def _convert(data: bytes, name: str) -> AudioClip:
    try:
        info = check_wav(data)
    except AudioFormatError:
        wav = _encode(_resampled(*_decode(data, name)))
        info = check_wav(wav)
    else:
        wav = data
    if info.frames == 0:
        raise AudioFormatError(f"{name} holds no audio (0 samples)")
    return AudioClip(wav, info, base64.b64encode(wav).decode("ascii"))


def _decode(data: bytes, name: str) -> tuple[npt.NDArray[np.float32], int]:
    try:
        import soundfile  # noqa: PLC0415 - the audio extra
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"{name} is not 16 kHz mono 16-bit WAV; {_EXTRA_HINT}") from exc
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioFormatError(f"cannot read audio from {name}: {exc}") from None
    if samples.shape[0] == 0:
        raise AudioFormatError(f"{name} holds no audio (0 samples)")
    return samples, int(rate)


def _resampled(samples: npt.NDArray[np.float32], rate: int) -> npt.NDArray[np.int16]:
    import numpy as np  # noqa: PLC0415 - the audio extra
    import soxr  # noqa: PLC0415 - the audio extra

    mono = np.nan_to_num(samples.mean(axis=1, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    if rate != REQUIRED_RATE:
        # libsoxr's high quality filter: no audible aliasing from content above 8 kHz.
        mono = soxr.resample(mono, rate, REQUIRED_RATE, quality="HQ")
    pcm: npt.NDArray[np.int16] = np.clip(np.rint(mono * 32767.0), -32768, 32767).astype("<i2")
    return pcm


def _encode(pcm: npt.NDArray[np.int16]) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(REQUIRED_RATE)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()
