"""The HTTP API, fuzzed by schemathesis against the service's own OpenAPI description.

A real `callstream serve` (ACS passthrough speech, API tokens set so that auth is
exercised, a fixed callback secret) serves `GET /openapi.json`. Schemathesis takes that
description (`pipeline.api.openapi`, loaded at import so that every operation is a test item;
a test checks that the server serves exactly it) and, for every operation, sends the
schema's examples, its coverage cases (edges and invalid values of every parameter and
body) and `CALLSTREAM_API_FUZZ_EXAMPLES` random cases (default 25), valid and invalid, to
the server. Each answer must:

- not be a server error (5xx);
- use a status code and a content type the description declares, with a body and headers
  that match its schema;
- refuse invalid input (4xx), and refuse a request without its credential (401).

Path parameters are steered to a stored call and to a live one half of the time, so that
the read side and the manual controls are reached past their 404s. Afterwards the server
must still be healthy and its log free of tracebacks.

Longer run: ``CALLSTREAM_API_FUZZ_EXAMPLES=1000 python -m pytest tests/test_api_schemathesis.py``.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from websockets.sync.client import connect

from pipeline.api.openapi import openapi_document

from .conftest import Server, start_server, wait_until
from .fake_acs import FakeAcs

# Schemathesis' own strategies draw from `random` (hypothesis warns about it); not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module:hypothesis.errors.HypothesisDeprecationWarning"
)

TOKEN = "schemathesis-api-token-0123456789"
SECRET = "schemathesis-callback-secret-0123456789"
EXAMPLES = int(os.environ.get("CALLSTREAM_API_FUZZ_EXAMPLES", "25"))
STORED_CALL = "fuzz-stored-call"
LIVE_CALL = "fuzz-live-call"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]


def _frame(kind: str, payload: dict[str, Any]) -> str:
    return json.dumps({"kind": kind, kind[0].lower() + kind[1:]: payload})


METADATA = _frame(
    "AudioMetadata", {"encoding": "PCM", "sampleRate": 16000, "channels": 1, "length": 640}
)
AUDIO = _frame(
    "AudioData", {"participantRawID": "4:+15550100", "data": base64.b64encode(bytes(640)).decode()}
)
SAID = _frame(
    "TranscriptionData",
    {"text": "my card is 4111 1111 1111 1111", "resultStatus": "Final", "offset": 0, "duration": 20_000_000,
     "participantRawID": "4:+15550100"},
)  # fmt: skip


@pytest.fixture(scope="module")
def acs() -> Iterator[FakeAcs]:
    """Call Automation, for the operations that need it to succeed (a Teams expert consult
    on the live call: the fake answers 404 for a call it never connected, so the consult
    fails as an event, never as the HTTP answer)."""
    with FakeAcs() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, acs: FakeAcs) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("schemathesis"),
        CALLSTREAM_STT="acs",
        CALLSTREAM_API_TOKENS=TOKEN,
        CALLSTREAM_CALLBACK_SECRET=SECRET,
        CALLSTREAM_MEDIA_AUTH="off",
        CALLSTREAM_MEDIA_IDLE_TIMEOUT_S="86400",  # the live call below sends nothing while fuzzed
        CALLSTREAM_ACS_ENDPOINT=acs.endpoint,
        CALLSTREAM_ACS_KEY=acs.access_key,
        CALLSTREAM_RECORDING="off",
    )
    srv.token = TOKEN
    try:
        # A stored, ended call for the read side (transcript, audit, manifest, hold) ...
        with connect(f"{srv.ws}/media?callId={STORED_CALL}") as ws:
            for frame in (METADATA, AUDIO, SAID, AUDIO):
                ws.send(frame)
        wait_until(
            lambda: srv.get_json(f"/calls/{STORED_CALL}/audit")[0] == 200 and _ended(srv, STORED_CALL),
            30, "the stored call to end", interval=0.1,
        )  # fmt: skip
        # ... and a live one for the manual controls; it stays open for the whole run.
        with connect(f"{srv.ws}/media?callId={LIVE_CALL}") as live:
            live.send(METADATA)
            live.send(AUDIO)
            yield srv
    finally:
        srv.stop()


def _ended(srv: Server, call_id: str) -> bool:
    status, body = srv.get_json("/calls")
    return status == 200 and any(c["callId"] == call_id and c["endedAt"] for c in body["calls"])


def flatmap_path_parameters(
    context: Any, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy:
    """Half of the cases name a call that exists (stored, or live), the rest what was generated."""
    if not path_parameters or "callId" not in path_parameters:
        return st.just(path_parameters)
    return st.sampled_from([STORED_CALL, LIVE_CALL]).map(
        lambda c: {**path_parameters, "callId": c}
    ) | st.just(path_parameters)


ANSWERS: Counter[tuple[str, int]] = Counter()  # (operation, status) -> count

# Headers that frame the HTTP message rather than carry the API's input: a generated
# `content-length: G2V` makes the request malformed HTTP, which the HTTP layer (h11) answers
# with 400 before any route sees it. That is the protocol's answer, not the API's; the
# cases keep every other generated header.
FRAMING_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "host", "connection", "upgrade"}
)


def after_call(context: Any, case: schemathesis.Case, response: schemathesis.Response) -> None:
    ANSWERS[(case.operation.label, response.status_code)] += 1


def _load_schema() -> schemathesis.BaseSchema:
    """The description the service serves (test_every_http_route_is_described checks that
    `GET /openapi.json` returns exactly this), with the test's credentials."""
    config = schemathesis.Config.from_dict(
        {
            "auth": {
                "openapi": {"bearerAuth": {"bearer": TOKEN}, "callbackSecret": {"api_key": SECRET}}
            },
            "generation": {"max-examples": EXAMPLES},
            "seed": int(os.environ.get("CALLSTREAM_API_FUZZ_SEED", "8")),
        }
    )
    loaded = schemathesis.openapi.from_dict(openapi_document(auth=True), config=config)
    loaded.hook(flatmap_path_parameters)
    loaded.hook(after_call)
    return loaded


# Loaded at import so that every operation is its own test item (schemathesis' lazy
# `from_fixture` loader does not work with pytest 9's nodes); the server's address is
# given per request.
schema = _load_schema()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
def test_api_conforms_to_its_openapi_description(case: schemathesis.Case, server: Server) -> None:
    if case.headers:
        case.headers = {k: v for k, v in case.headers.items() if k.lower() not in FRAMING_HEADERS}
    case.call_and_validate(base_url=server.http, checks=CHECKS, timeout=10)


def test_server_survived_the_fuzzing(server: Server) -> None:
    """Runs after the operations above (same module, file order): the server is up and
    logged no traceback, and every operation got past auth to a success at least once."""
    if ANSWERS:
        print("\nanswers (operation, status: count):")
        for (label, status), n in sorted(ANSWERS.items()):
            print(f"  {label:45} {status}: {n}")
        ok = {label for (label, status), _ in ANSWERS.items() if 200 <= status < 400}
        assert ok == {label for label, _ in ANSWERS}, "operations never answered with a success"
    assert server.proc.poll() is None, "the server exited"
    assert server.get_json("/healthz") == (200, {"status": "ok"})
    assert server.get_json("/readyz")[0] == 200
    logs = server.logs()
    assert "Traceback" not in logs, logs[-4000:]
    assert "Exception in ASGI application" not in logs


def test_every_http_route_is_described(server: Server, tmp_path) -> None:
    """A route added to the app without a description fails here."""
    from starlette.routing import Route

    from models.settings import load_settings
    from pipeline.api.app import create_app
    from pipeline.service import Service

    status, doc = server.get_json("/openapi.json")
    assert status == 200 and doc == openapi_document(auth=True)
    app = create_app(
        Service(load_settings(environ={}, overrides={"stt": "acs", "data_dir": str(tmp_path)}))
    )
    described = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    for route in app.routes:
        if not isinstance(route, Route):
            continue
        path = route.path.replace("{action:str}", "{action}")
        if path == "/console/":
            continue  # the same page as /console
        for method in route.methods - {"HEAD"}:
            assert (path, method) in described, f"{method} {path} is not in the OpenAPI description"
    # Open without a token (the API itself needs one here).
    import urllib.request

    with urllib.request.urlopen(f"{server.http}/openapi.json", timeout=10) as r:
        assert r.status == 200 and json.loads(r.read())["openapi"].startswith("3.")
