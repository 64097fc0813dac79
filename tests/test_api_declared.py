"""The HTTP API is declared once (`pipeline/api/routes.py`), so what is mounted and what is
documented cannot part ways.

- Every route `create_app` mounts (methods included) is in the document `GET /openapi.json`
  serves, the websockets under `x-callstream-websockets`, and every documented operation
  is served by the route the router picks for it.
- Every route declares an access level, and the document states it (`x-callstream-access`,
  `security`); a real server refuses exactly the routes whose level it enforces, and takes
  the credential the document names.
- The document is valid OpenAPI 3.1: against the specification's own schema, every schema
  in it is valid JSON Schema 2020-12, and every `$ref` resolves.
- The answers met along the way match the document (tests/test_api_schemathesis.py holds
  every operation to it at length).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import requests
import schemathesis
from schemathesis.specs.openapi.definitions import OPENAPI_31
from starlette.applications import Starlette
from starlette.routing import Match, Route, WebSocketRoute
from starlette.testclient import TestClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from models.settings import load_settings
from pipeline.api.access import LEVELS, security
from pipeline.api.app import create_app
from pipeline.api.routes import ROUTES
from pipeline.api.spec import Operation, doc_path
from pipeline.service import Service

from .conftest import Server, start_server
from .fake_jwks import FakeJwks

TOKEN = "declared-api-token-0123456789abcdef"
SECRET = "declared-callback-secret-0123456789"
AUDIENCE = "declared-test-audience"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Starlette:
    settings = load_settings(
        environ={},
        overrides={
            "stt": "acs",
            "data_dir": str(tmp_path_factory.mktemp("declared")),
            "api_tokens": TOKEN,
        },
    )
    return create_app(Service(settings))


@pytest.fixture(scope="module")
def doc(app: Starlette) -> dict[str, Any]:
    """The document as the app serves it (open: no token)."""
    answer = TestClient(app).get("/openapi.json")  # no lifespan: nothing here needs the store
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    return answer.json()


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert method in METHODS, f"{path}: {method!r} is not an HTTP method"
            yield path, method.upper(), op


def _concrete(path: str, op: dict[str, Any] | None = None) -> str:
    """``path`` with every parameter filled in: the first value of an enum, else a word."""
    values = {}
    for p in (op or {}).get("parameters", []):
        if p["in"] == "path":
            values[p["name"]] = p["schema"].get("enum", ["no-such-call"])[0]
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "no-such-call"), path)


def _mounted_as(app: Starlette, kind: str, path: str, method: str | None = None) -> Any:
    """The route the router picks for a request (Starlette tries its routes in order)."""
    scope: dict[str, Any] = {"type": kind, "path": path, "root_path": ""}
    if method:
        scope["method"] = method
    return next((r for r in app.routes if r.matches(scope)[0] is Match.FULL), None)


# ---------------------------------------------------------------- mounted == documented


def test_every_mounted_route_is_documented(app: Starlette, doc: dict[str, Any]) -> None:
    documented = {(path, method) for path, method, _ in _operations(doc)}
    sockets = {ws["path"] for ws in doc["x-callstream-websockets"]}
    aliases = {alias: e for e in ROUTES if isinstance(e, Operation) for alias in e.also_at}
    for route in app.routes:
        if isinstance(route, WebSocketRoute):
            assert route.path in sockets, f"WS {route.path} is not in the document"
            continue
        assert isinstance(route, Route), f"{route!r}: a kind of route the document cannot know"
        canonical = aliases.get(route.path)
        if canonical is not None:  # the same operation again: documented at its first path
            assert getattr(route.endpoint, "__wrapped__", None) is canonical.endpoint
            assert (doc_path(canonical.path), canonical.method) in documented
            continue
        assert route.methods, f"{route.path} answers every method"
        assert "HEAD" not in route.methods or "GET" in route.methods  # Starlette's own HEAD
        for method in route.methods - {"HEAD"}:
            key = (doc_path(route.path), method)
            assert key in documented, f"{method} {route.path} is not in the document"


def test_every_documented_operation_is_mounted(app: Starlette, doc: dict[str, Any]) -> None:
    for path, method, op in _operations(doc):
        route = _mounted_as(app, "http", _concrete(path, op), method)
        assert isinstance(route, Route), f"{method} {path} is documented but not served"
        assert doc_path(route.path) == path, f"{method} {path} is served by {route.path}"
    for ws in doc["x-callstream-websockets"]:
        route = _mounted_as(app, "websocket", _concrete(ws["path"]))
        assert isinstance(route, WebSocketRoute) and route.path == ws["path"], ws["path"]


def test_every_route_declares_its_access(app: Starlette, doc: dict[str, Any]) -> None:
    declared = {e.path: e.access for e in ROUTES}
    declared |= {a: e.access for e in ROUTES if isinstance(e, Operation) for a in e.also_at}
    for route in app.routes:
        assert declared.get(route.path) in LEVELS, f"{route.path} declares no access level"
    for path, method, op in _operations(doc):
        level = op.get("x-callstream-access")
        assert level in LEVELS, f"{method} {path}: no x-callstream-access"
        assert op["security"] == security(level, api_auth=True), f"{method} {path}"
        if op["security"]:
            assert "401" in op["responses"], f"{method} {path} needs a credential: 401 undeclared"
    for ws in doc["x-callstream-websockets"]:
        assert ws["x-callstream-access"] in LEVELS, ws["path"]


# ---------------------------------------------------------------- a valid OpenAPI 3.1 document


def _schemas(node: Any) -> Iterator[Any]:
    """Every JSON Schema in an OpenAPI document (the values of its ``schema`` keys and of
    ``components.schemas``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema":
                yield value
            elif key == "schemas" and isinstance(value, dict):
                yield from value.values()
            else:
                yield from _schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schemas(value)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_the_document_is_valid_openapi_31(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1.")
    jsonschema.Draft202012Validator(OPENAPI_31).validate(doc)
    schemas = list(_schemas(doc))
    assert len(schemas) > 20
    for schema in schemas:
        jsonschema.Draft202012Validator.check_schema(schema)
    for ref in set(_refs(doc)):
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]
    ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(ids) == len(set(ids)), "operationIds repeat"
    tags = {t["name"] for t in doc["tags"]}
    for path, method, op in _operations(doc):
        assert set(op["tags"]) <= tags, f"{method} {path}: undescribed tag"
        assert op["responses"], f"{method} {path}: no answer declared"
        named = set(re.findall(r"\{(\w+)\}", path))
        params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert named == params, f"{method} {path}: path parameters {params}"
    schemathesis.openapi.from_dict(doc).validate()  # what the fuzz test loads it with


# ---------------------------------------------------------------- what a running server enforces


@pytest.fixture(scope="module")
def jwks() -> Iterator[FakeJwks]:
    with FakeJwks() as j:
        yield j


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, jwks: FakeJwks) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("declared-server"),
        CALLSTREAM_STT="acs",
        CALLSTREAM_API_TOKENS=TOKEN,
        CALLSTREAM_CALLBACK_SECRET=SECRET,
        CALLSTREAM_MEDIA_AUTH="acs-jwt",  # refuses a handshake without ACS's JWT
        CALLSTREAM_ACS_AUDIENCE=AUDIENCE,
        CALLSTREAM_ACS_JWKS_URL=jwks.url,
    )
    try:
        yield srv
    finally:
        srv.stop()


def _call(server: Server, method: str, path: str, **kw: Any) -> requests.Response:
    data = b"{}" if method == "POST" else None
    headers = {"content-type": "application/json"} if data else {}
    return requests.request(
        method,
        server.http + path,
        data=data,
        headers=headers | kw.pop("headers", {}),
        allow_redirects=False,
        timeout=10,
        **kw,
    )


def test_a_running_server_enforces_the_declared_access(server: Server, jwks: FakeJwks) -> None:
    acs_token = {"Authorization": f"Bearer {jwks.token(audience=AUDIENCE)}"}
    served = requests.get(f"{server.http}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(served)
    checked = set()
    for path, method, op in _operations(served):
        level = op["x-callstream-access"]
        url = _concrete(path, op)
        bare = _call(server, method, url)
        schema[path][method].validate_response(bare)
        challenged = bare.headers.get("www-authenticate", "").startswith("Bearer")
        if level in ("api", "console"):
            assert bare.status_code == 401 and challenged, f"{method} {path} is open"
            given = _call(server, method, url, headers={"Authorization": f"Bearer {TOKEN}"})
        elif level == "acs":
            assert bare.status_code == 401 and not challenged, f"{method} {path} is open"
            # The secret, and (with an audience) the sender's signed JWT: ACS's, here.
            given = _call(server, method, url, params={"secret": SECRET}, headers=acs_token)
        else:
            assert bare.status_code != 401, f"{method} {path} ({level}) wants a credential"
            given = bare
        assert given.status_code != 401, f"{method} {path}: the documented credential fails"
        schema[path][method].validate_response(given)
        checked.add(level)
    assert checked >= {"public", "metrics", "api", "console", "acs"}

    for ws in served["x-callstream-websockets"]:
        url = f"{server.ws}{_concrete(ws['path'])}"
        assert _close_code(url) == 1008, f"WS {ws['path']} accepted no credential"
        if ws["x-callstream-access"] == "api":
            assert _close_code(f"{url}?access_token={TOKEN}") is None, ws["path"]
        else:  # the API's token is no credential for ACS's media stream
            assert ws["x-callstream-access"] == "media", ws["path"]
            assert _close_code(f"{url}?access_token={TOKEN}") == 1008, ws["path"]
    assert "Traceback" not in server.logs()


def _close_code(url: str) -> int | None:
    """The close code a websocket gets at once, or None while it stays open."""
    with connect(url, open_timeout=10) as ws:
        try:
            ws.recv(timeout=1.0)
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        return None


def test_readiness_answer_is_the_documented_one(server: Server) -> None:
    """`degraded` was once answered but not documented: the schema forbids unnamed keys now."""
    doc = requests.get(f"{server.http}/openapi.json", timeout=10).json()
    readiness = doc["components"]["schemas"]["Readiness"]
    body = json.loads(requests.get(f"{server.http}/readyz", timeout=10).content)
    assert set(body) == set(readiness["required"]) == set(readiness["properties"])
    assert readiness["additionalProperties"] is False
