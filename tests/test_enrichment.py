"""Sentiment, translation and the call summary: VADER locally, an OpenAI-compatible model
through the real `openai` client against a local fake (tests/fake_openai.py)."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from pipeline.cli.replay import load_call_audio, replay_call
from pipeline.privacy.spoken_numbers import normalize
from workers.enrich.sentiment import LocalSentiment

from .conftest import (
    FIXTURES,
    collect_call_events,
    load_manifest,
    start_server,
    start_subscribers,
    wait_for,
)
from .fake_openai import FakeOpenAI
from .test_e2e_media import _transcription

CUSTOMER = "4:+15551234"
AGENT = "8:acs:agent-7"


def of(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("great. is there anything else i can help with?", "positive"),  # support_call, agent
        ("no, that is all. thank you.", "positive"),  # support_call, customer
        ("thanks for your call. goodbye.", "positive"),
        ("hi, my internet is not working.", "neutral"),
        ("this is ridiculous, i am furious and the service is terrible", "negative"),
        ("i hate waiting, this is the worst support ever", "negative"),
        ("my card is [CREDIT_CARD]", "neutral"),  # tags sway nothing
    ],
)
def test_vader_labels(text: str, label: str) -> None:
    if "internet" in text or "thank" in text or "great" in text:
        assert text in [u["text"] for u in load_manifest("support_call")["utterances"]]
    result = LocalSentiment().score(text)
    assert result.label == label, result
    assert -1 <= result.score <= 1


@pytest.fixture
def fake_llm():
    with FakeOpenAI() as fake:
        yield fake


def llm_env(fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": fake.api_key, "OPENAI_BASE_URL": fake.base_url, "CALLSTREAM_SENTIMENT": "openai",
        "CALLSTREAM_TRANSLATOR": "openai", "CALLSTREAM_TRANSLATE_TO": "de", **extra,
    }  # fmt: skip


async def test_spoken_call_is_enriched_and_the_model_never_sees_a_secret(
    fake_llm, tmp_path
) -> None:
    manifest = load_manifest("payment_call")
    server = start_server(tmp_path, CALLSTREAM_STT="local", **llm_env(fake_llm))
    try:
        call_id = "enriched-payment"
        [collector] = await start_subscribers(server, collect_call_events(server.ws, call_id))
        await replay_call(
            f"{server.ws}/media", load_call_audio(FIXTURES / "payment_call.wav"), call_id, speed=2.0
        )
        events = await collector
    finally:
        server.stop()
    finals = of(events, "transcript.final")
    sentiments = of(events, "sentiment")
    translations = of(events, "translation")
    assert {s["utteranceId"] for s in sentiments} == {f["utteranceId"] for f in finals}
    assert all(
        s["label"] in ("positive", "neutral", "negative") and s["rollingScore"] is not None
        for s in sentiments
    )
    assert {t["utteranceId"] for t in translations} == {f["utteranceId"] for f in finals}
    by_uid = {f["utteranceId"]: f["text"] for f in finals}
    for t in translations:
        assert t["language"] == "de"
        tags = [w for w in by_uid[t["utteranceId"]].split() if w.startswith("[")]
        assert [
            w for w in t["text"].split() if w.startswith("[")
        ] == tags  # tags intact and in order
    [summary] = of(events, "summary")
    assert summary["text"].startswith("Summary: ")
    assert (
        summary["categories"]
        == next(e for e in events if e["type"] == "analytics" and e["final"])["categories"]
    )
    assert events[-1]["type"] == "call.ended" and events.index(summary) < len(events) - 1
    # The model saw only redacted text: no digit run of the card or phone number, spoken or written.
    seen = fake_llm.all_text()
    secrets_digits = manifest["secrets"][0] + " " + manifest["secrets"][2]
    leaks = [
        r.digits for r in normalize(seen).runs if len(r.digits) >= 4 and r.digits in secrets_digits
    ]
    assert not leaks and manifest["secrets"][1] not in seen
    assert "[CREDIT_CARD]" in seen


async def test_a_failing_or_slow_model_degrades_to_the_fallback(fake_llm, tmp_path) -> None:
    fake_llm.default_behavior = ("hang", 3.0)
    server = start_server(
        tmp_path, CALLSTREAM_STT="acs", CALLSTREAM_LLM_TIMEOUT_S="0.5", **llm_env(fake_llm)
    )
    try:
        call_id = "slow-model"
        seen: list[dict] = []
        [collector] = await start_subscribers(
            server, collect_call_events(server.ws, call_id, into=seen)
        )

        def errors_of(kind: str) -> float:
            return server.metric(f'callstream_enrichment_errors_total{{kind="{kind}"}}')

        async with connect(
            f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
        ) as ws:
            await ws.send(_transcription("this is terrible, I am furious", "Final", CUSTOMER, 0))
            await ws.send(
                _transcription("I am sorry, let me fix that right away", "Final", AGENT, 3000)
            )
            # The hanging model has timed out on both lines: each got VADER's sentiment.
            await wait_for(lambda: len(of(seen, "sentiment")) == 2, what="two fallback sentiments")
            await wait_for(
                lambda: asyncio.to_thread(lambda: errors_of("translation") >= 2),
                what="two failed translations",
            )
            fake_llm.default_behavior = 500
            await ws.send(_transcription("thank you, that is great", "Final", CUSTOMER, 6000))
            await wait_for(
                lambda: len(of(seen, "sentiment")) == 3, what="the third fallback sentiment"
            )
            await wait_for(
                lambda: asyncio.to_thread(lambda: errors_of("translation") >= 3),
                what="the third failed translation",
            )
        events = await collector
        metrics = server.get_bytes("/metrics").decode()
    finally:
        server.stop()
    labels = [s["label"] for s in of(events, "sentiment")]
    assert (
        labels == ["negative", "negative", "positive"]
        or labels[0] == "negative"
        and labels[-1] == "positive"
    )
    assert len(labels) == 3  # every final still got a sentiment, from VADER
    assert not of(events, "translation") and not of(events, "summary")
    assert events[-1]["type"] == "call.ended"
    errors = {
        line.split('"')[1]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("callstream_enrichment_errors_total{")
    }
    assert errors["sentiment"] >= 2 and errors["translation"] >= 3 and errors["summary"] == 1
    assert json.dumps(events).count("Summary") == 0


async def test_azure_openai_is_served_through_the_same_client(fake_llm) -> None:
    from workers.enrich.llm import LlmClient

    llm = LlmClient(
        model="my-deployment",
        azure_endpoint=fake_llm.azure_endpoint,
        azure_api_key=fake_llm.api_key,
    )
    try:
        rated = await llm.sentiment([("a", "thank you, that is great"), ("b", "this is terrible")])
        translated = await llm.translate("my card is [CREDIT_CARD] thanks", "fr")
    finally:
        await llm.aclose()
    assert rated["a"].label == "positive" and rated["b"].label == "negative"
    assert "[CREDIT_CARD]" in translated
    assert all("/openai/deployments/my-deployment/" in r["path"] for r in fake_llm.requests)
