"""The OpenAI chat-completions fake, driven by the real `openai` client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import openai
import pytest

from .fake_openai import FakeOpenAI, default_responder, prefix_words


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as f:
        yield f


def client(fake: FakeOpenAI, *, key: str | None = None, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=fake.base_url,
        api_key=key or fake.api_key,
        max_retries=0,
        timeout=timeout,
    )


def ask(c: openai.OpenAI, system: str, user: str, **kw) -> str:
    r = c.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        **kw,
    )
    return r.choices[0].message.content


def test_chat_completion_is_answered_and_recorded(fake: FakeOpenAI) -> None:
    assert fake.base_url.startswith("http://127.0.0.1:") and fake.base_url.endswith("/v1")
    c = client(fake)
    r = c.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello there"}],
        temperature=0.2,
        n=2,
    )
    assert r.object == "chat.completion"
    assert r.model == "gpt-4o-mini"
    assert [ch.message.content for ch in r.choices] == ["ok", "ok"]
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    assert fake.count == 1
    req = fake.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["model"] == "gpt-4o-mini"
    assert req["messages"] == [{"role": "user", "content": "hello there"}]
    assert req["body"]["temperature"] == 0.2 and req["body"]["n"] == 2
    assert req["headers"]["authorization"] == f"Bearer {fake.api_key}"
    assert req["status"] == 200 and isinstance(req["t_mono"], float)
    assert "hello there" in fake.all_text()


def test_sentiment_default_answer(fake: FakeOpenAI) -> None:
    c = client(fake)
    utterances = [
        {"id": "u1", "text": "Thanks so much, that's great"},
        {"id": "u2", "text": "This is ridiculous and unacceptable"},
        {"id": "u3", "text": "My account number is [ACCOUNT]"},
        {"id": "u4", "text": "I'm so frustrated"},
    ]
    out = ask(
        c,
        "Classify the sentiment of each utterance. Answer JSON.",
        json.dumps({"utterances": utterances}),
        response_format={"type": "json_object"},
    )
    assert json.loads(out) == {
        "results": [
            {"id": "u1", "label": "positive", "score": 0.8},
            {"id": "u2", "label": "negative", "score": -0.8},
            {"id": "u3", "label": "neutral", "score": 0.0},
            {"id": "u4", "label": "negative", "score": -0.8},
        ]
    }
    assert fake.requests[0]["body"]["response_format"] == {"type": "json_object"}
    plain = ask(c, "What is the sentiment?", "I love it")
    assert json.loads(plain) == {"label": "neutral", "score": 0.0}


def test_translation_keeps_redaction_tags(fake: FakeOpenAI) -> None:
    c = client(fake)
    out = ask(
        c,
        "Translate the text into the target language. Keep [TAGS] unchanged.",
        json.dumps({"target": "de", "text": "hello [CREDIT_CARD] thanks"}),
    )
    assert out == "de:hello [CREDIT_CARD] de:thanks"
    assert prefix_words("my card is [CREDIT_CARD].", "fr") == "fr:my fr:card fr:is [CREDIT_CARD]."
    plain = ask(c, "Translate to the target language: es", "good morning")
    assert plain == "es:good es:morning"


def test_summary_and_other_default_answers(fake: FakeOpenAI) -> None:
    c = client(fake)
    long = "The caller asked about a refund for order 1234 and the agent agreed to send it."
    assert ask(c, "Summarize the call.", long) == "Summary: " + long[:60]
    assert ask(c, "You are helpful.", "hi") == "ok"
    assert default_responder({"messages": []}) == "ok"


def test_custom_responder_and_reply_behavior(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: "echo:" + body["messages"][-1]["content"]
    c = client(fake)
    assert ask(c, "x", "ping") == "echo:ping"
    fake.script(("reply", "not json {"))
    assert ask(c, "x", "ping") == "not json {"
    assert ask(c, "x", "ping") == "echo:ping"


def test_wrong_key_is_401(fake: FakeOpenAI) -> None:
    with pytest.raises(openai.AuthenticationError):
        ask(client(fake, key="wrong"), "x", "y")
    assert fake.requests[0]["status"] == 401


def test_scripted_errors_then_ok(fake: FakeOpenAI) -> None:
    c = client(fake)
    fake.script(500, 429, 503, "ok")
    with pytest.raises(openai.InternalServerError) as ei:
        ask(c, "x", "y")
    assert ei.value.status_code == 500
    assert ei.value.body["type"] == "server_error"
    with pytest.raises(openai.RateLimitError):
        ask(c, "x", "y")
    with pytest.raises(openai.InternalServerError) as ei:
        ask(c, "x", "y")
    assert ei.value.status_code == 503
    assert ask(c, "x", "y") == "ok"
    assert [r["status"] for r in fake.requests] == [500, 429, 503, 200]
    with pytest.raises(ValueError):
        fake.script(("sleep", 1))


def test_default_behavior_applies_when_queue_empty(fake: FakeOpenAI) -> None:
    c = client(fake)
    fake.default_behavior = 500
    fake.script("ok")
    assert ask(c, "x", "y") == "ok"
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            ask(c, "x", "y")
    fake.default_behavior = ("delay", 0.3)
    t0 = time.monotonic()
    assert ask(c, "x", "y") == "ok"
    assert time.monotonic() - t0 >= 0.3


def test_hang_times_out_the_client(fake: FakeOpenAI) -> None:
    fake.script(("hang", 2))
    c = client(fake, timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        ask(c, "x", "y")
    assert time.monotonic() - t0 < 1.5
    assert ask(c, "x", "y") == "ok"  # the next request is answered at once


def test_disconnect_is_a_connection_error(fake: FakeOpenAI) -> None:
    fake.script("disconnect")
    with pytest.raises(openai.APIConnectionError):
        ask(client(fake), "x", "y")


def test_stream_is_rejected(fake: FakeOpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        ask(client(fake), "x", "y", stream=True)


def test_azure_client_against_deployment_path(fake: FakeOpenAI) -> None:
    az = openai.AzureOpenAI(
        azure_endpoint=fake.azure_endpoint,
        api_key=fake.api_key,
        api_version="2024-06-01",
        max_retries=0,
        timeout=5.0,
    )
    r = az.chat.completions.create(
        model="my-deployment",
        messages=[{"role": "system", "content": "Summarize."}, {"role": "user", "content": "abc"}],
    )
    assert r.choices[0].message.content == "Summary: abc"
    req = fake.requests[-1]
    assert (
        req["path"] == "/openai/deployments/my-deployment/chat/completions?api-version=2024-06-01"
    )
    assert req["deployment"] == "my-deployment"
    assert req["headers"]["api-key"] == fake.api_key

    bad = openai.AzureOpenAI(
        azure_endpoint=fake.azure_endpoint, api_key="nope", api_version="2024-06-01", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="d", messages=[{"role": "user", "content": "x"}])


def test_all_text_finds_secrets_across_requests(fake: FakeOpenAI) -> None:
    c = client(fake)
    ask(c, "You are helpful.", "my card is 4111 1111 1111 1111")
    fake.script(500)
    with pytest.raises(openai.InternalServerError):
        ask(c, "x", 'Grüße an "Jürgen"')
    text = fake.all_text()
    assert "4111 1111 1111 1111" in text
    assert 'Grüße an "Jürgen"' in text
    fake.reset()
    assert fake.count == 0 and fake.all_text() == ""
