"""Audio helpers: generated sounds in many formats come out as 16 kHz mono 16-bit WAV, with the
same length and pitch, no aliasing, clear errors for what is not audio, and a cache."""

from __future__ import annotations

import base64
import io
import os
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile

from sipgate_ai_flow import AudioFormatError, BargeInConfig
from sipgate_ai_flow.audio import clear_audio_cache, load_audio
from sipgate_ai_flow.testing import Emulator
from tests.helpers import wav_bytes


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    clear_audio_cache()


def tone(freq: float, rate: int, seconds: float, channels: int = 1, level: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    wave_ = (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if channels == 1:
        return wave_[:, None]
    # The tone on the first channel only: mixed down it keeps half its level.
    return np.stack([wave_] + [np.zeros_like(wave_)] * (channels - 1), axis=1)


def encoded(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def pcm(clip_wav: bytes) -> tuple[np.ndarray, int, int, int]:
    with wave.open(io.BytesIO(clip_wav), "rb") as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768
        return frames, w.getframerate(), w.getnchannels(), w.getsampwidth()


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples**2)))


@pytest.mark.parametrize(
    ("rate", "channels", "fmt", "subtype"),
    [
        (44_100, 2, "WAV", "PCM_24"),
        (48_000, 1, "WAV", "FLOAT"),
        (8_000, 1, "WAV", "PCM_U8"),
        (22_050, 6, "WAV", "PCM_32"),
        (16_000, 2, "WAV", "PCM_16"),
        (32_000, 1, "FLAC", None),
        (44_100, 2, "OGG", "VORBIS"),
        (24_000, 1, "AIFF", "PCM_16"),
    ],
)
def test_any_common_audio_becomes_16k_mono_16bit_with_length_and_pitch_kept(
    rate: int, channels: int, fmt: str, subtype: str | None
) -> None:
    source = encoded(tone(440, rate, 1.5, channels), rate, fmt, subtype)
    clip = load_audio(source)
    samples, out_rate, out_channels, width = pcm(clip.wav)
    assert (out_rate, out_channels, width) == (16_000, 1, 2)
    assert clip.info.sample_rate == 16_000
    assert abs(clip.duration_ms - 1500) <= 2
    assert abs(peak_hz(samples, 16_000) - 440) < 2
    expected_rms = 0.5 / np.sqrt(2) / channels  # a sine's RMS, shared among the channels
    assert rms(samples) == pytest.approx(expected_rms, rel=0.05)
    assert base64.b64decode(clip.base64) == clip.wav


def test_content_above_8_khz_is_filtered_out_not_folded_back() -> None:
    # 12 kHz cannot exist at 16 kHz; dropping samples naively would fold it to 4 kHz.
    clip = load_audio(encoded(tone(12_000, 48_000, 1.0), 48_000, "WAV", "PCM_16"))
    samples = pcm(clip.wav)[0]
    assert rms(samples) < 0.01 * (0.5 / np.sqrt(2))


def test_audio_already_in_the_format_is_kept_byte_for_byte() -> None:
    data = encoded(tone(300, 16_000, 0.5), 16_000, "WAV", "PCM_16")
    assert load_audio(data).wav == data


def test_files_load_and_are_cached_until_they_change(tmp_path: Path) -> None:
    path = tmp_path / "hold.flac"
    path.write_bytes(encoded(tone(440, 44_100, 1.0), 44_100, "FLAC"))
    first = load_audio(path)
    assert load_audio(str(path)) is first
    path.write_bytes(encoded(tone(440, 44_100, 2.0), 44_100, "FLAC"))
    os.utime(path, ns=(1, 1))  # a different mtime, whatever the clock's resolution
    second = load_audio(path)
    assert second is not first
    assert abs(second.duration_ms - 2000) <= 2


def test_bytes_are_cached_by_content() -> None:
    data = encoded(tone(440, 8_000, 0.5), 8_000, "WAV", "PCM_16")
    assert load_audio(data) is load_audio(bytearray(data))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"this is not audio at all", "cannot read audio from the audio bytes"),
        (b"", "cannot read audio"),
        (wav_bytes(frames=0), "holds no audio"),
        (wav_bytes(rate=8_000, frames=0), "holds no audio"),
    ],
)
def test_unusable_input_says_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(AudioFormatError, match=message):
        load_audio(data)


def test_missing_files_and_too_long_clips(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "absent.wav")
    with pytest.raises(AudioFormatError, match=r"plays 3\.0 s, longer than max_seconds=2"):
        load_audio(encoded(tone(440, 16_000, 3.0), 16_000, "WAV", "PCM_16"), max_seconds=2)


async def test_clips_make_valid_actions_that_the_emulator_plays_for_their_length() -> None:
    from sipgate_ai_flow import Assistant

    clip = load_audio(encoded(tone(440, 44_100, 2.5, channels=2), 44_100, "WAV", "PCM_24"))
    barge_in = BargeInConfig(strategy="none")
    assistant = Assistant(
        on_session_start=lambda event: [clip.mix(volume=0.3), clip.audio(barge_in=barge_in), "Welcome."]
    )
    async with Emulator(assistant, strict=True).call() as call:
        await call.listen()
    assert call.settings["mix_audio"].volume == 0.3  # type: ignore[union-attr]
    audio_playback = call.played[0]
    assert audio_playback.action.type == "audio"
    assert abs(audio_playback.duration_ms - 2500) <= 2
    assert call.said == ["Welcome."]
    assert call.violations == []
