"""The OpenAPI 3.1 document of the HTTP API, generated from the route table.

Paths, methods, parameters and answers come from `routes.py`; the schemas are msgspec's
JSON Schema of the body types in `wire.py` (the types the handlers encode and decode); what
an access level needs and adds comes from `access.py`. Nothing about a single route is
written here, so the document cannot drift from what is mounted. A mistake in the table
(a path parameter without a declaration, an answer declared twice) raises at generation,
that is when `create_app` runs.

The document is open (no token): it names no secret, and an operator needs it to wire a
client. ``security`` lists a bearer credential only while API auth is on, as the service
enforces it only then; ``x-callstream-access`` always names the route's access level.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

import msgspec
from msgspec import NODEFAULT

from pipeline.api import access
from pipeline.api.routes import ROUTES, TAGS
from pipeline.api.spec import (
    JSON,
    Entry,
    Operation,
    Param,
    Reply,
    Socket,
    doc_path,
    path_names,
)
from pipeline.api.wire import Error
from pipeline.version import version

__all__ = ["build_document", "openapi_document"]

SCHEMA_REF = "#/components/schemas/{name}"
RESPONSE_REF = "#/components/responses/{name}"

INTRO = """\
callstream turns Azure Communication Services (ACS) call audio into live, redacted
transcripts, pauses the call recording while a card payment is taken, and keeps a
redacted, append-only record of every call for compliance export.

This document covers the HTTP endpoints; it is generated from the same route table the
service mounts. When `CALLSTREAM_API_TOKENS` (or an API JWT issuer) is unset the API is
open, which `serve` allows only on a loopback host."""


class _Schemas:
    """msgspec's schemas of every type the document uses, generated in one pass so that the
    structs land once in ``components.schemas`` and are referenced everywhere else."""

    def __init__(self, types: Iterable[Any]) -> None:
        unique = list(dict.fromkeys(types))
        inline, self.components = msgspec.json.schema_components(unique, ref_template=SCHEMA_REF)
        self._inline = dict(zip(unique, inline, strict=True))

    def __call__(self, t: Any) -> dict[str, Any]:
        return copy.deepcopy(self._inline[t])  # a copy: a parameter adds its default


def _replies(op: Operation, api_auth: bool) -> dict[int, Reply]:
    added = access.replies(op.access, api_auth)
    twice = sorted(set(added) & set(op.replies))
    if twice:
        raise ValueError(f"{op.method} {op.path}: {twice} come from access {op.access!r}")
    return dict(sorted({**access.guard_replies(op, api_auth), **op.replies, **added}.items()))


def _params(op: Operation, api_auth: bool) -> tuple[Param, ...]:
    params = (*op.params, *access.params(op.access, api_auth))
    declared = {p.name for p in params if p.where == "path"}
    if declared != path_names(op.path):
        raise ValueError(f"{op.method} {op.path}: path parameters declared {sorted(declared)}")
    return params


def _types(ops: list[Operation], api_auth: bool) -> Iterable[Any]:
    yield Error
    for op in ops:
        yield from (p.type for p in _params(op, api_auth))
        if op.body is not None:
            yield op.body
        for reply in _replies(op, api_auth).values():
            yield from reply.content.values()
            yield from reply.headers.values()


class _Builder:
    def __init__(self, ops: list[Operation], api_auth: bool) -> None:
        self.api_auth = api_auth
        self.schema = _Schemas(_types(ops, api_auth))
        self.responses: dict[str, Any] = {}

    def param(self, p: Param) -> dict[str, Any]:
        schema = self.schema(p.type)
        if p.default is not NODEFAULT:
            schema["default"] = p.default
        out: dict[str, Any] = {"name": p.name, "in": p.where, "required": p.where == "path"}
        if p.description:
            out["description"] = p.description
        return out | {"schema": schema}

    def header(self, r: Reply, name: str) -> dict[str, Any]:
        out = {"schema": self.schema(r.headers[name])}
        return out | {"required": True} if name in r.required_headers else out

    def reply(self, r: Reply) -> dict[str, Any]:
        out: dict[str, Any] = {"description": r.description}
        if r.headers:
            out["headers"] = {name: self.header(r, name) for name in r.headers}
        if r.content:
            out["content"] = {m: {"schema": self.schema(t)} for m, t in r.content.items()}
        if r.component is None:
            return out
        if self.responses.setdefault(r.component, out) != out:
            raise ValueError(f"two different answers share the name {r.component!r}")
        return {"$ref": RESPONSE_REF.format(name=r.component)}

    def operation(self, op: Operation) -> dict[str, Any]:
        out: dict[str, Any] = {
            "operationId": op.name,
            "tags": [op.tag],
            "summary": op.summary,
            "x-callstream-access": op.access,
            "security": access.security(op.access, self.api_auth),
        }
        if roles := access.roles(op):
            out["x-callstream-roles"] = roles
        params = _params(op, self.api_auth)
        if params:
            out["parameters"] = [self.param(p) for p in params]
        if op.body is not None:
            out["requestBody"] = {
                "required": op.body_required,
                "content": {JSON: {"schema": self.schema(op.body)}},
            }
        replies = _replies(op, self.api_auth)
        out["responses"] = {str(status): self.reply(r) for status, r in replies.items()}
        return out


def _description(sockets: list[Socket], api_auth: bool) -> str:
    lines = [INTRO, "", "Websockets (not operations, so listed here and under"]
    lines.append("`x-callstream-websockets`):")
    lines.append("")
    lines += [f"- `WS {s.path}`: {s.summary} Access: `{s.access}`." for s in sockets]
    lines += ["", "Access levels (`x-callstream-access` on every operation):", ""]
    lines += [f"- `{level}`: {access.MEANING[level]}." for level in access.LEVELS]
    lines += [
        "",
        f"On the server that serves this document, API auth is {'on' if api_auth else 'off'}.",
    ]
    return "\n".join(lines)


def build_document(
    table: Iterable[Entry], tags: Mapping[str, str], api_auth: bool
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``table``; ``api_auth``: whether bearer auth is enforced."""
    entries = list(table)
    ops = [e for e in entries if isinstance(e, Operation)]
    sockets = [e for e in entries if isinstance(e, Socket)]
    builder = _Builder(ops, api_auth)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        item = paths.setdefault(doc_path(op.path), {})
        if op.method.lower() in item:
            raise ValueError(f"{op.method} {op.path} is declared twice")
        if op.tag not in tags:
            raise ValueError(f"{op.method} {op.path}: tag {op.tag!r} is not described")
        item[op.method.lower()] = builder.operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callstream",
            "version": version(),
            "description": _description(sockets, api_auth),
        },
        "tags": [{"name": name, "description": text} for name, text in tags.items()],
        "paths": paths,
        "components": {
            "schemas": builder.schema.components,
            "responses": builder.responses,
            "securitySchemes": access.SECURITY_SCHEMES,
        },
        "x-callstream-websockets": [
            {"path": s.path, "name": s.name, "summary": s.summary, "x-callstream-access": s.access}
            | ({"x-callstream-roles": access.roles(s)} if access.roles(s) else {})
            for s in sockets
        ],
    }


@cache
def _document(api_auth: bool) -> dict[str, Any]:
    return build_document(ROUTES, TAGS, api_auth)


def openapi_document(auth: bool = True) -> dict[str, Any]:
    """The document of the service's own table (a copy: callers may change it)."""
    return copy.deepcopy(_document(auth))
