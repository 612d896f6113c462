"""API bearer tokens: JWTs signed with the installation's Ed25519 key (EdDSA), issued locally by
``kintsmesh token issue``. A token names its client (``sub``), its scopes and the legal purpose the
client is registered for (``api_clients.yaml``); a citizen's token is bound to one RIC."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from kintsmesh.errors import TerminalError
from kintsmesh.security.secrets import create_once, private_folder

CLIENTS_FILE = Path(__file__).with_name("api_clients.yaml")
ISSUER = "kintsmesh-local-issuer"
AUDIENCE = "kintsmesh-api"
CITIZEN_SCOPE = "audit:self"
CITIZEN_PURPOSE = "a citizen reading who accessed their own data"
CITIZEN_RATE = 60


class TokenError(TerminalError):
    """A token that cannot be accepted (missing, malformed, expired, forged, of an unknown client)."""


@dataclass(frozen=True)
class Client:
    client_id: str
    scopes: frozenset[str]
    purpose: str
    requests_per_minute: int
    ric: str | None = None      # a citizen: the one RIC the token is about


@cache
def clients(path: Path = CLIENTS_FILE) -> dict[str, Client]:
    spec: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    return {name: Client(name, frozenset(body["scopes"]), str(body["purpose"]), int(body["requests_per_minute"]))
            for name, body in spec.items()}


def signing_key(secrets: Path) -> ed25519.Ed25519PrivateKey:
    path = private_folder(secrets) / "api-signing.key"
    if not path.exists():
        create_once(path, ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise TokenError(f"{path} is not an Ed25519 key")
    return key


def issue(secrets: Path, client_id: str | None = None, citizen_ric: str | None = None,
          ttl_s: int = 3600, now: float | None = None) -> str:
    """A token for a registered client, or for a citizen (their own audit trail only)."""
    now = time.time() if now is None else now
    claims: dict[str, Any]
    if citizen_ric:
        claims = {"sub": f"citizen:{citizen_ric.strip().upper()}", "scope": CITIZEN_SCOPE, "purpose": CITIZEN_PURPOSE,
                  "ric": citizen_ric.strip().upper()}
    else:
        client = clients().get(client_id or "")
        if client is None:
            raise TokenError(f"unknown client {client_id!r}: register it in {CLIENTS_FILE}")
        claims = {"sub": client.client_id, "scope": " ".join(sorted(client.scopes)), "purpose": client.purpose}
    claims.update(iss=ISSUER, aud=AUDIENCE, iat=int(now), exp=int(now + ttl_s), jti=str(uuid.uuid4()))
    return jwt.encode(claims, signing_key(secrets), algorithm="EdDSA")


class Verifier:
    """Checks tokens against the installation's public key and today's client registry."""

    def __init__(self, secrets: Path) -> None:
        self.public_key = signing_key(secrets).public_key()

    def client(self, token: str) -> Client:
        try:
            claims = jwt.decode(token, self.public_key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER,
                                options={"require": ["exp", "iat", "sub", "aud", "iss"]})
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from exc
        scopes = frozenset(str(claims.get("scope", "")).split())
        subject = str(claims["sub"])
        if subject.startswith("citizen:"):
            ric = str(claims.get("ric") or "")
            if scopes != {CITIZEN_SCOPE} or subject != f"citizen:{ric}" or not ric:
                raise TokenError("invalid citizen token")
            return Client(subject, scopes, CITIZEN_PURPOSE, CITIZEN_RATE, ric)
        registered = clients().get(subject)
        if registered is None:
            raise TokenError(f"client {subject!r} is not registered")
        # what the registry allows today, never more than the token says
        return Client(subject, scopes & registered.scopes, registered.purpose, registered.requests_per_minute)
