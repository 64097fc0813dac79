"""A local JWKS endpoint and token minter, standing in for ACS's signing keys in tests.

`FakeJwks` serves ``{"keys": [...]}`` (the public halves of its RSA keys) on loopback and
counts the fetches; `token` signs a JWT the way ACS signs its media-streaming handshake
(RS256, issuer ``https://acscallautomation.communication.azure.com``, ``aud`` = the ACS
resource id), with knobs for every way a token can be wrong.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .loopback import LoopbackServer

ACS_ISSUER = "https://acscallautomation.communication.azure.com"
ACS_AUDIENCE = "00000000-1111-2222-3333-444444444444"  # an ACS resource id


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        fake: FakeJwks = self.server.fake
        with fake.lock:
            fake.fetches += 1
            body = json.dumps(fake.jwks()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakeJwks(LoopbackServer):
    handler = _Handler
    thread_name = "fake-jwks"

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        self.add_key("acs-key-1")

    def _make_server(self, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        return server

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + "/calling/keys"

    def add_key(self, kid: str) -> rsa.RSAPrivateKey:
        key = new_rsa_key()
        with self.lock:
            self.keys[kid] = key
        return key

    def jwks(self) -> dict:
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def token(
        self,
        *,
        kid: str = "acs-key-1",
        key: Any = None,
        algorithm: str = "RS256",
        issuer: str | None = ACS_ISSUER,
        audience: str | None = ACS_AUDIENCE,
        expires_in: float | None = 300,
        **claims: Any,
    ) -> str:
        """A signed JWT; ``key`` overrides the signing key (another key, or an HMAC secret)."""
        now = int(time.time())
        payload: dict[str, Any] = {"iat": now, "nbf": now - 5, **claims}
        if issuer is not None:
            payload["iss"] = issuer
        if audience is not None:
            payload["aud"] = audience
        if expires_in is not None:
            payload["exp"] = now + int(expires_in)
        signing_key = key if key is not None else self.keys[kid]
        return jwt.encode(payload, signing_key, algorithm=algorithm, headers={"kid": kid})

    def unsigned_token(self, kid: str = "acs-key-1") -> str:
        """``alg: none`` with an empty signature: what a forger sends."""
        now = int(time.time())
        header = {"alg": "none", "typ": "JWT", "kid": kid}
        payload = {"iss": ACS_ISSUER, "aud": ACS_AUDIENCE, "iat": now, "exp": now + 300}
        return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}."
