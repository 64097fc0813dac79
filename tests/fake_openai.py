"""A local fake of an OpenAI-compatible chat-completions server, for tests.

Stdlib only. `FakeOpenAI` is an HTTP server on 127.0.0.1 (in a background thread) that
answers `POST /v1/chat/completions` (OpenAI) and
`POST /openai/deployments/{deployment}/chat/completions?api-version=...` (Azure OpenAI) with
a valid non-streaming ChatCompletion, records every request it receives, and lets a test
inject failures (`script`, `default_behavior`).

    with FakeOpenAI() as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0)
        azure = openai.AzureOpenAI(
            azure_endpoint=fake.azure_endpoint, api_key=fake.api_key, api_version="2024-06-01"
        )

Auth: `Authorization: Bearer <api_key>` or `api-key: <api_key>` on either path; anything else
is answered 401 (OpenAI's `invalid_api_key` error), which the client raises as
`openai.AuthenticationError`.

The assistant content comes from `responder(body) -> str` (default: `default_responder`,
a crude sentiment / translation / summary imitation, see there).

Behaviors (`script(*behaviors)` queues them, one consumed per chat-completions request;
`default_behavior` is used when the queue is empty):

    "ok"                  answer normally
    500 / 429 / 503 ...   an int: answer that status with an OpenAI-style error JSON
    ("delay", seconds)    sleep, then answer normally
    ("hang", seconds)     same, meant to outlast a client timeout (the late answer is dropped)
    ("reply", text)       answer normally but with this content instead of the responder's
    "disconnect"          close the connection without answering (`openai.APIConnectionError`)
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .loopback import LoopbackServer

Behavior = str | int | tuple[str, Any]
Responder = Callable[[dict], str]

_V1_PATH = re.compile(r"^/v1/chat/completions/?$")
_AZURE_PATH = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/chat/completions/?$")
_AZURE_V1_PATH = re.compile(r"^/openai/v1/chat/completions/?$")

_ERROR_KINDS = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout", "timeout"),
    409: ("invalid_request_error", "conflict"),
    422: ("invalid_request_error", "unprocessable_entity"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", "server_error"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
}
_ERROR_MESSAGES = {
    429: "Rate limit reached (fake).",
    500: "The server had an error while processing your request (fake).",
    503: "The engine is currently overloaded, please try again later (fake).",
}

POSITIVE_WORDS = ("thank", "great", "happy", "love")
NEGATIVE_WORDS = ("angry", "terrible", "ridiculous", "unacceptable", "frustrat")
_TAG = re.compile(r"\[[^\[\]\s]+\]")  # a redaction tag such as [CREDIT_CARD]
_TARGET_IN_PROMPT = re.compile(
    r"\btarget(?:[ _]language)?\b\W{0,3}([a-z]{2,3}(?:-[A-Za-z]{2,4})?)\b", re.IGNORECASE
)


# ---------------------------------------------------------------- default responder


def content_text(content: Any) -> str:
    """The text of a message `content`: a string, or a list of parts ({"type": "text", ...})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return json.dumps(content)


def _messages(body: dict) -> list[dict]:
    msgs = body.get("messages")
    return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []


def _texts(body: dict, roles: tuple[str, ...]) -> list[str]:
    return [content_text(m.get("content")) for m in _messages(body) if m.get("role") in roles]


def _last_user_text(body: dict) -> str:
    users = _texts(body, ("user",))
    return users[-1] if users else ""


def _task(body: dict) -> str:
    """Which task ("sentiment", "translate", "summary", "other"): decided by the
    system/developer prompt if it names one, otherwise by everything the messages say."""
    for texts in (
        _texts(body, ("system", "developer")),
        [content_text(m.get("content")) for m in _messages(body)],
    ):
        low = "\n".join(texts).lower()
        if "sentiment" in low:
            return "sentiment"
        if "translat" in low:
            return "translate"
        if "summar" in low:
            return "summary"
    return "other"


def classify(text: str) -> tuple[str, float]:
    """The crude keyword rule: negative words win over positive ones."""
    low = text.lower()
    if any(w in low for w in NEGATIVE_WORDS):
        return "negative", -0.8
    if any(w in low for w in POSITIVE_WORDS):
        return "positive", 0.8
    return "neutral", 0.0


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def sentiment_answer(body: dict) -> str:
    for text in reversed(_texts(body, ("user",))):
        doc = _json_or_none(text)
        utterances = doc.get("utterances") if isinstance(doc, dict) else doc
        if isinstance(utterances, list) and all(isinstance(u, dict) for u in utterances):
            results = []
            for u in utterances:
                label, score = classify(str(u.get("text", "")))
                results.append({"id": u.get("id"), "label": label, "score": score})
            return json.dumps({"results": results})
    return json.dumps({"label": "neutral", "score": 0.0})


def prefix_words(text: str, target: str) -> str:
    """Every word prefixed with "<target>:"; redaction tags ([CREDIT_CARD]) and pure
    punctuation kept exactly; whitespace kept."""
    out = []
    for token in re.split(r"(\s+)", text):
        if not token or token.isspace():
            out.append(token)
            continue
        for piece in re.split(f"({_TAG.pattern})", token):
            if not piece or _TAG.fullmatch(piece) or not re.search(r"\w", piece):
                out.append(piece)
            else:
                out.append(f"{target}:{piece}")
    return "".join(out)


def translate_answer(body: dict) -> str:
    user = _last_user_text(body)
    doc = _json_or_none(user)
    if isinstance(doc, dict) and isinstance(doc.get("text"), str):
        return prefix_words(doc["text"], str(doc.get("target") or "xx"))
    m = _TARGET_IN_PROMPT.search("\n".join(_texts(body, ("system", "developer"))))
    return prefix_words(user, m.group(1) if m else "xx")


def default_responder(body: dict) -> str:
    """The default assistant content for a parsed chat-completions request body.

    - sentiment (a prompt says "sentiment"): for a user message `{"utterances": [{"id", "text"}]}`
      answers `{"results": [{"id", "label", "score"}]}` by keyword (thank/great/happy/love ->
      positive 0.8; angry/terrible/ridiculous/unacceptable/frustrat -> negative -0.8, which wins;
      else neutral 0.0); any other user content -> `{"label": "neutral", "score": 0.0}`.
    - translation ("translat"): user `{"target": "de", "text": "..."}` -> the text with each word
      prefixed "de:", redaction tags like "[CREDIT_CARD]" kept as they are; plain-text user
      content is prefixed the same way (target from "target: xx" in the system prompt, else "xx").
    - summary ("summar"): "Summary: " + the first 60 characters of the last user message.
    - otherwise "ok".
    """
    task = _task(body)
    if task == "sentiment":
        return sentiment_answer(body)
    if task == "translate":
        return translate_answer(body)
    if task == "summary":
        return "Summary: " + _last_user_text(body)[:60]
    return "ok"


# ---------------------------------------------------------------- server


def error_body(status: int, message: str | None = None) -> dict:
    type_, code = _ERROR_KINDS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", str(status))
    )
    msg = message or _ERROR_MESSAGES.get(status) or f"Fake error {status}."
    return {"error": {"message": msg, "type": type_, "param": None, "code": code}}


def _validate_behavior(b: Behavior) -> Behavior:
    if b in ("ok", "disconnect"):
        return b
    if isinstance(b, int) and not isinstance(b, bool) and 100 <= b <= 599:
        return b
    if isinstance(b, tuple) and len(b) == 2:
        kind, arg = b
        if kind in ("delay", "hang") and isinstance(arg, int | float) and arg >= 0:
            return (kind, float(arg))
        if kind == "reply" and isinstance(arg, str):
            return b
    raise ValueError(f"unknown FakeOpenAI behavior: {b!r}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeOpenAI


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30  # idle keep-alive connections

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, doc: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(doc).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        self.server.fake._handle(self, method)


class FakeOpenAI(LoopbackServer):
    """A fake OpenAI / Azure OpenAI chat-completions server on 127.0.0.1 (see module doc)."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        api_key: str = "fake-key",
        port: int = 0,
        default_behavior: Behavior = "ok",
    ) -> None:
        super().__init__(port)
        self.api_key = api_key
        self.responder: Responder = responder or default_responder
        self.default_behavior: Behavior = default_behavior
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._queue: deque[Behavior] = deque()
        self._stop_event = threading.Event()
        self._seq = 0

    # ------------------------------------------------------------ lifecycle

    handler = _Handler
    thread_name = "fake-openai"

    def _make_server(self, handler: type) -> _Server:
        self._stop_event.clear()
        return _Server(("127.0.0.1", self._port), handler)

    def _stopping(self) -> None:
        self._stop_event.set()  # wakes sleeping "delay"/"hang" handlers

    @property
    def base_url(self) -> str:
        """For `openai.OpenAI(base_url=...)`."""
        return self.origin + "/v1"

    @property
    def azure_endpoint(self) -> str:
        """For `openai.AzureOpenAI(azure_endpoint=...)`."""
        return self.origin

    # ------------------------------------------------------------ test controls

    def script(self, *behaviors: Behavior) -> None:
        """Queue behaviors, consumed one per chat-completions request (see module doc)."""
        checked = [_validate_behavior(b) for b in behaviors]
        with self._lock:
            self._queue.extend(checked)

    @property
    def scripted_left(self) -> int:
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Forget recorded requests and queued behaviors (keeps responder/default_behavior)."""
        with self._lock:
            self.requests.clear()
            self._queue.clear()

    @property
    def count(self) -> int:
        """How many requests the fake has received (any path, including refused ones)."""
        with self._lock:
            return len(self.requests)

    def chat_requests(self) -> list[dict]:
        """The recorded requests that reached a chat-completions route (a copy)."""
        with self._lock:
            return [r for r in self.requests if r["route"] is not None]

    def all_text(self) -> str:
        """Everything every request carried (path, header values, raw body, and each message's
        text unescaped), concatenated: for searching the fake's inputs for secrets."""
        with self._lock:
            reqs = list(self.requests)
        out = []
        for r in reqs:
            out.append(r["path"])
            out.extend(f"{k}: {v}" for k, v in r["headers"].items())
            out.append(r["raw"])
            for m in r["messages"] or []:
                if isinstance(m, dict):
                    out.append(content_text(m.get("content")))
        return "\n".join(out)

    def wait_for_count(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until at least `n` requests were received; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count >= n:
                return True
            time.sleep(0.01)
        return self.count >= n

    # ------------------------------------------------------------ request handling

    def _authorized(self, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and auth[7:].strip() == self.api_key:
            return True
        return headers.get("api-key", "") == self.api_key

    def _next_behavior(self) -> Behavior:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default_behavior

    def _handle(self, h: _Handler, method: str) -> None:
        t_mono = time.monotonic()
        raw = h._read_body()
        url = urlsplit(h.path)
        headers = {k.lower(): v for k, v in h.headers.items()}
        text = raw.decode("utf-8", errors="replace")
        body = _json_or_none(text) if text else None
        route: str | None = None
        deployment: str | None = None
        if _V1_PATH.match(url.path):
            route = "openai"
        elif m := _AZURE_PATH.match(url.path):
            route, deployment = "azure", m.group("deployment")
        elif _AZURE_V1_PATH.match(url.path):
            route = "azure"
        is_dict = isinstance(body, dict)
        rec: dict[str, Any] = {
            "method": method,
            "path": h.path,
            "route": route,
            "deployment": deployment,
            "api_version": (parse_qs(url.query).get("api-version") or [None])[0],
            "model": body.get("model") if is_dict else None,
            "messages": body.get("messages") if is_dict else None,
            "body": body,
            "raw": text,
            "headers": headers,
            "t_mono": t_mono,
            "t_wall": time.time(),
            "status": None,
            "behavior": None,
        }
        with self._lock:
            self._seq += 1
            seq = self._seq
            self.requests.append(rec)

        def answer(status: int, doc: dict) -> None:
            rec["status"] = status
            h._send_json(status, doc)

        if route is None:
            return answer(404, error_body(404, f"Unknown path {method} {url.path} (fake)."))
        if method != "POST":
            return answer(405, error_body(405, f"Method {method} not allowed (fake)."))
        if not self._authorized(headers):
            return answer(401, error_body(401, "Incorrect API key provided (fake)."))
        if deployment is not None and not rec["api_version"]:
            return answer(400, error_body(400, "Missing required query parameter api-version."))
        if not is_dict:
            return answer(400, error_body(400, "Request body is not a JSON object."))
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return answer(400, error_body(400, "'messages' must be a non-empty array."))
        if not body.get("model") and deployment is None:
            return answer(400, error_body(400, "you must provide a model parameter"))
        if body.get("stream"):
            return answer(400, error_body(400, "stream=true is not supported by the fake."))

        behavior = self._next_behavior()
        rec["behavior"] = behavior
        override: str | None = None
        if behavior == "disconnect":
            rec["status"] = 0
            h.close_connection = True
            return None
        if isinstance(behavior, int):
            return answer(behavior, error_body(behavior))
        if isinstance(behavior, tuple):
            kind, arg = behavior
            if kind in ("delay", "hang"):
                if self._stop_event.wait(float(arg)):
                    rec["status"] = 0
                    h.close_connection = True
                    return None
            elif kind == "reply":
                override = arg

        if override is None:
            try:
                content = self.responder(body)
            except Exception as e:  # surfaces a broken test responder as a 500
                return answer(500, error_body(500, f"responder failed: {e!r}"))
        else:
            content = override
        n = body.get("n") if isinstance(body.get("n"), int) and body["n"] > 0 else 1
        prompt_tokens = sum(len(content_text(m.get("content")).split()) for m in _messages(body))
        completion_tokens = len(str(content).split()) * n
        return answer(
            200,
            {
                "id": f"chatcmpl-fake{seq:06d}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or deployment,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                    for i in range(n)
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )
