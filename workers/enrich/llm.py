"""An OpenAI-compatible chat model for sentiment, translation and summaries.

Any server that speaks the chat-completions API will do (`OPENAI_BASE_URL`), Azure
OpenAI included. Only redacted text is ever sent (README, Architecture: invariant 1): the
caller passes what the Redactor produced. The client's own retries are off: a slow or
failing model must degrade to the fallback within the timeout, not retry in silence.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .sentiment import Sentiment, label_for

__all__ = ["LlmClient", "LlmError", "tags_of"]

_TAG = re.compile(r"\[[A-Z0-9_]+\]")

SENTIMENT_PROMPT = (
    "You rate the sentiment of utterances from a contact-center call. Tags in square "
    'brackets such as [CREDIT_CARD] replace redacted data. Answer only JSON: {"results": '
    '[{"id": ..., "label": "positive"|"neutral"|"negative", "score": number from -1 to 1}]}, '
    "one result per utterance, same ids."
)
TRANSLATE_PROMPT = (
    "You translate one utterance from a contact-center call. Tags in square brackets such "
    "as [CREDIT_CARD] replace redacted data: keep every tag exactly as written, in the same "
    "order, where it belongs in the sentence. Answer with the translation only."
)
SUMMARY_PROMPT = (
    "You summarize contact-center calls for a supervisor in three sentences or fewer: the "
    "customer's reason for calling, what was done, and anything left open. Tags in square "
    "brackets replace redacted data; never guess what they hid."
)


class LlmError(RuntimeError):
    """The model failed or answered something unusable; the message names why, not what."""


def tags_of(text: str) -> list[str]:
    return _TAG.findall(text)


class LlmClient:
    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        azure_endpoint: str | None = None,
        azure_api_key: str | None = None,
        azure_api_version: str = "2024-10-21",
        timeout_s: float = 5.0,
    ) -> None:
        import openai

        self.model = model
        if azure_endpoint:
            self._client: Any = openai.AsyncAzureOpenAI(
                azure_endpoint=azure_endpoint, api_key=azure_api_key, api_version=azure_api_version,
                timeout=timeout_s, max_retries=0,
            )  # fmt: skip
        else:
            self._client = openai.AsyncOpenAI(
                api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0
            )

    async def _chat(self, system: str, user: str) -> str:
        try:
            resp = await self._client.chat.completions.create(
                model=self.model,
                temperature=0,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            )
        except Exception as exc:  # openai's errors carry request details: name only the kind
            raise LlmError(type(exc).__name__) from None
        content = resp.choices[0].message.content if resp.choices else None
        if not content:
            raise LlmError("empty answer")
        return content.strip()

    async def sentiment(self, items: list[tuple[str, str]]) -> dict[str, Sentiment]:
        """Rate several (id, redacted text) at once: one request per batch."""
        user = json.dumps({"utterances": [{"id": i, "text": t} for i, t in items]})
        content = await self._chat(SENTIMENT_PROMPT, user)
        try:
            doc = json.loads(content[content.index("{") : content.rindex("}") + 1])
            out = {}
            for r in doc["results"]:
                score = max(-1.0, min(1.0, float(r["score"])))
                label = (
                    r.get("label")
                    if r.get("label") in ("positive", "neutral", "negative")
                    else label_for(score)
                )
                out[str(r["id"])] = Sentiment(label, round(score, 3))
        except (ValueError, KeyError, TypeError):
            raise LlmError("the sentiment answer is not the JSON asked for") from None
        return out

    async def translate(self, text: str, target: str) -> str:
        """Translate redacted text; the answer must keep every tag, in order."""
        content = await self._chat(TRANSLATE_PROMPT, json.dumps({"target": target, "text": text}))
        if tags_of(content) != tags_of(text):
            raise LlmError("the translation lost or moved a redaction tag")
        return content

    async def summarize(self, lines: list[tuple[str, str]]) -> str:
        transcript = "\n".join(f"{role}: {text}" for role, text in lines)
        return await self._chat(SUMMARY_PROMPT, transcript)

    async def aclose(self) -> None:
        await self._client.close()
