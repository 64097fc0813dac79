"""An e-mail address said with a misheard "at" never leaves the privacy boundary.

Issue 18 found it on a real call through the local engine: the recognizer heard "the
address is john galt smith *better* example dot com", the redactor needed the word "at",
and the address was published, stored, exported in all four formats, served by the read
API and sent to the translation model twice. Here the same words, as ACS would send them
(partials growing word by word, then the final), go through the real service, with
sentiment and translation by a model behind the fake OpenAI server: the address and its
parts appear in none of the events, the store, the exports, the API's answers, the logs
or the model's requests.
"""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect

from .conftest import collect_call_events, start_server, start_subscribers
from .fake_openai import FakeOpenAI
from .test_e2e_media import _transcription
from .test_redaction_session import all_outputs, texts

CUSTOMER = "4:+15551234"
AGENT = "8:acs:agent-7"
SAID = "the address is john galt smith better example dot com"
# The address and every part of it that is not an everyday word.
SECRETS = ("john", "galt", "smith", "better example", "example dot com", "example.com")


@pytest.fixture
def fake_llm():
    with FakeOpenAI() as fake:
        yield fake


async def test_a_misheard_at_never_lets_the_address_out(fake_llm, tmp_path) -> None:
    server = start_server(
        tmp_path,
        CALLSTREAM_STT="acs",
        OPENAI_API_KEY=fake_llm.api_key,
        OPENAI_BASE_URL=fake_llm.base_url,
        CALLSTREAM_SENTIMENT="openai",
        CALLSTREAM_TRANSLATOR="openai",
        CALLSTREAM_TRANSLATE_TO="de",
    )
    call_id = "misheard-email"
    try:
        [collector] = await start_subscribers(server, collect_call_events(server.ws, call_id))
        words = SAID.split()
        async with connect(
            f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
        ) as ws:
            await ws.send(
                _transcription("and what email address should we use", "Final", AGENT, 500)
            )
            # The recognizer's partials grow a word at a time, as they do on a live call.
            for n in range(4, len(words)):
                await ws.send(_transcription(" ".join(words[:n]), "Intermediate", CUSTOMER, 3000))
            await ws.send(_transcription(SAID, "Final", CUSTOMER, 3000))
            await ws.send(
                _transcription("thank you, the confirmation is on its way", "Final", AGENT, 9000)
            )
        events = await collector
        outputs = all_outputs(server, call_id, events)
        outputs["api /calls"] = server.get_bytes("/calls").decode()
        outputs["console"] = server.get_bytes(f"/console/{call_id}").decode()
        outputs["model requests"] = fake_llm.all_text()
    finally:
        server.stop()

    assert texts(events, "transcript.final") == [
        "and what email address should we use",
        "the address is [EMAIL_ADDRESS]",
        "thank you, the confirmation is on its way",
    ]
    partials = texts(events, "transcript.partial")
    assert partials and all(p == "the address is" for p in partials), partials
    # The model was asked (sentiment and translation) and saw the tag, never the address.
    assert "[EMAIL_ADDRESS]" in outputs["model requests"]
    assert any(e["type"] == "translation" for e in events)
    for name, text in outputs.items():
        low = text.lower()
        for secret in SECRETS:
            assert secret not in low, f"{secret!r} leaked into {name}"
    for fmt in ("jsonl", "vtt", "txt", "csv"):  # the line is there, redacted, in each format
        assert "the address is [EMAIL_ADDRESS]" in outputs[f"export ({fmt})"], fmt
