"""The SSML builder: any text comes out escaped in a well-formed document; bad values are refused
with the reason; TTS presets are valid configs."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipgate_ai_flow import TTS_PRESETS, Speak, SsmlError, TtsConfig, ssml, tts_preset
from sipgate_ai_flow.testing import strip_ssml

NS = "{http://www.w3.org/2001/10/synthesis}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
ALLOWED = st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff")
xml_text = st.text(
    alphabet=st.one_of(ALLOWED.filter(lambda c: c >= " " or c in "\t\n\r")), min_size=1
).filter(str.strip)


def parse(document: str) -> ET.Element:
    return ET.fromstring(document)


def test_a_document_with_every_part() -> None:
    document = ssml.speak(
        "Dr. ",
        ssml.sub("Dr.", "Doctor"),
        ssml.say_as("2411", "date", format="dm"),
        ssml.pause(250),
        ssml.pause(strength="strong"),
        ssml.prosody("slowly & <calmly>", rate="-20%", pitch="+2st", volume="soft"),
        ssml.emphasis("now", level="strong"),
        ssml.lang("de-DE", "Guten Tag"),
        lang="en-US",
        voice="en-US-JennyNeural",
    )
    root = parse(document)
    assert root.tag == f"{NS}speak"
    assert (root.get("version"), root.get(XML_LANG)) == ("1.0", "en-US")
    [voice] = list(root)
    assert (voice.tag, voice.get("name")) == (f"{NS}voice", "en-US-JennyNeural")
    tags = [child.tag.removeprefix(NS) for child in voice]
    assert tags == ["sub", "say-as", "break", "break", "prosody", "emphasis", "lang"]
    assert voice.find(f"{NS}say-as").attrib == {"interpret-as": "date", "format": "dm"}  # type: ignore[union-attr]
    breaks = voice.findall(f"{NS}break")
    assert [b.attrib for b in breaks] == [{"time": "250ms"}, {"strength": "strong"}]
    prosody = voice.find(f"{NS}prosody")
    assert prosody is not None
    assert prosody.text == "slowly & <calmly>"
    assert prosody.attrib == {"rate": "-20%", "pitch": "+2st", "volume": "soft"}
    assert voice.find(f"{NS}lang").get(XML_LANG) == "de-DE"  # type: ignore[union-attr]
    assert strip_ssml(document) == "Dr. Dr. 2411 slowly & <calmly> now Guten Tag"
    assert Speak(ssml=document).ssml == document


@given(xml_text)
def test_any_text_is_escaped_into_a_well_formed_document(text: str) -> None:
    root = parse(ssml.speak(text, ssml.prosody(text, rate="fast"), ssml.say_as(text, "characters")))
    # XML parsers normalise line ends; everything else comes back as given.
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert "".join(root.itertext()) == expected * 3


@given(st.text(min_size=1))
def test_text_never_yields_a_malformed_document(text: str) -> None:
    refusal = None
    try:
        document = ssml.speak(text, ssml.sub("x", text))
    except SsmlError as exc:
        refusal = str(exc)
    if refusal is None:
        parse(document)
    else:
        assert "cannot appear in SSML" in refusal or "needs" in refusal


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ssml.speak("a\x00b"), r"character '\\x00' at position 1 cannot appear"),
        (lambda: ssml.speak("   "), "speak needs some content"),
        (lambda: ssml.speak("hi", lang="english"), "not a BCP-47 tag"),
        (ssml.pause, "exactly one of ms and strength"),
        (lambda: ssml.pause(100, strength="weak"), "exactly one of ms and strength"),
        (lambda: ssml.pause(-5), "0 or more"),
        (lambda: ssml.pause(float("nan")), "0 or more"),
        (lambda: ssml.pause(strength="loud"), "strength 'loud' is not one of none, x-weak"),
        (lambda: ssml.prosody("hi"), "at least one of rate, pitch and volume"),
        (lambda: ssml.prosody("hi", rate="warp"), "rate 'warp' is not one of"),
        (lambda: ssml.prosody("hi", pitch="10"), "pitch '10' is not one of"),
        (lambda: ssml.prosody("hi", volume="+6"), "volume '\\+6' is not one of"),
        (lambda: ssml.prosody("", rate="slow"), "prosody needs some content"),
        (lambda: ssml.say_as("12", 'date" onload="'), "is not a name"),
        (lambda: ssml.say_as(" ", "digits"), "say_as needs some text"),
        (lambda: ssml.voice(" ", "hi"), "voice needs a name"),
        (lambda: ssml.emphasis("hi", level="very"), "level 'very' is not one of"),
        (lambda: ssml.sub("Dr.", ""), "sub needs both text and alias"),
        (lambda: ssml.speak("hi", 42), "expected text or an SSML part, got int"),  # type: ignore[arg-type]
    ],
)
def test_bad_values_are_refused_with_the_reason(build: object, message: str) -> None:
    with pytest.raises(SsmlError, match=message):
        build()  # type: ignore[operator]


def test_relative_and_keyword_prosody_values_pass() -> None:
    for rate in ("x-slow", "+10%", "80%", "1.2"):
        ssml.prosody("a", rate=rate)
    for pitch in ("high", "-10%", "+50Hz", "220Hz", "-2st"):
        ssml.prosody("a", pitch=pitch)
    for volume in ("loud", "+6dB", "-3dB", "80", "+10%"):
        ssml.prosody("a", volume=volume)


def test_tts_presets_are_valid_configs_that_speak_accepts() -> None:
    assert tts_preset("Katja") == TtsConfig(provider="azure", language="de-DE", voice="de-DE-KatjaNeural")
    assert tts_preset("jenny").language == "en-US"
    assert tts_preset("rachel") == TtsConfig(provider="eleven_labs", voice="21m00Tcm4TlvDq8ikWAM")
    for name, config in TTS_PRESETS.items():
        speak = Speak(text="Hallo", tts=config)
        dumped = speak.model_dump(exclude_none=True)["tts"]
        assert dumped["provider"] in ("azure", "eleven_labs"), name
        if config.provider == "azure":
            assert config.voice is not None
            assert config.voice.startswith(dumped["language"]), name
    with pytest.raises(KeyError, match="no TTS preset 'hal'; there are: katja, conrad"):
        tts_preset("hal")


def test_azure_and_eleven_labs_constructors() -> None:
    assert TtsConfig.azure("fr-FR-DeniseNeural").language == "fr-FR"
    assert TtsConfig.azure("de-DE-KatjaNeural", "de-AT").language == "de-AT"
    assert TtsConfig.azure("MyCustomVoice").language is None
    assert TtsConfig.eleven_labs("abc").model_dump(exclude_none=True) == {
        "provider": "eleven_labs",
        "voice": "abc",
    }


def test_the_emulator_plays_silence_for_as_long_as_its_breaks() -> None:
    from sipgate_ai_flow.testing import playback_ms

    assert playback_ms(Speak(ssml=ssml.speak(ssml.pause(250), ssml.pause(1000)))) == 1250
    assert playback_ms(Speak(ssml=ssml.speak("two words", ssml.pause(250))), 120) == 1250
