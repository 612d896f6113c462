import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from kintsmesh.api import RateLimiter
from kintsmesh.security.tokens import AUDIENCE, ISSUER, Client, TokenError, Verifier, clients, issue


def test_a_registered_clients_token_carries_its_scopes_and_registered_purpose(tmp_path):
    client = Verifier(tmp_path).client(issue(tmp_path, "education-bureau"))
    assert client.client_id == "education-bureau"
    assert client.scopes == {"dossier:school-enrolment", "evidence:school_enrolment"}
    assert client.purpose == clients()["education-bureau"].purpose and client.ric is None


def test_a_citizen_token_is_bound_to_one_ric(tmp_path):
    client = Verifier(tmp_path).client(issue(tmp_path, citizen_ric="44030520201103671x"))
    assert client.ric == "44030520201103671X" and client.scopes == {"audit:self"}


@pytest.mark.parametrize("claims", [
    {"sub": "education-bureau", "scope": "dossier:school-enrolment", "aud": "other-api", "iss": ISSUER},
    {"sub": "education-bureau", "scope": "dossier:school-enrolment", "aud": AUDIENCE, "iss": "someone-else"},
    {"sub": "nobody-registered", "scope": "audit:read", "aud": AUDIENCE, "iss": ISSUER},
    {"sub": "citizen:440305202011036718", "scope": "audit:self audit:read", "aud": AUDIENCE, "iss": ISSUER,
     "ric": "440305202011036718"},
    {"sub": "citizen:440305202011036718", "scope": "audit:self", "aud": AUDIENCE, "iss": ISSUER, "ric": "1"},
])
def test_tokens_of_another_audience_issuer_client_or_a_forged_citizen_are_refused(tmp_path, claims):
    from kintsmesh.security.tokens import signing_key

    token = jwt.encode({**claims, "iat": 0, "exp": 2**40}, signing_key(tmp_path), algorithm="EdDSA")
    with pytest.raises(TokenError):
        Verifier(tmp_path).client(token)


def test_expired_unsigned_and_foreign_key_tokens_are_refused(tmp_path):
    verifier = Verifier(tmp_path)
    with pytest.raises(TokenError, match="expired"):
        verifier.client(issue(tmp_path, "education-bureau", ttl_s=60, now=1_000_000))
    claims = {"sub": "audit-office", "scope": "audit:read", "aud": AUDIENCE, "iss": ISSUER, "iat": 0, "exp": 2**40}
    with pytest.raises(TokenError):
        verifier.client(jwt.encode(claims, ed25519.Ed25519PrivateKey.generate(), algorithm="EdDSA"))
    with pytest.raises(TokenError):
        verifier.client(jwt.encode(claims, None, algorithm="none"))   # alg=none: never accepted
    with pytest.raises(TokenError):
        verifier.client(jwt.encode(claims, "a shared secret long enough for HS256 ...", algorithm="HS256"))


def test_a_token_never_gets_more_than_its_client_is_registered_for(tmp_path):
    from kintsmesh.security.tokens import signing_key

    claims = {"sub": "education-bureau", "scope": "dossier:school-enrolment audit:read", "aud": AUDIENCE,
              "iss": ISSUER, "iat": 0, "exp": 2**40}
    client = Verifier(tmp_path).client(jwt.encode(claims, signing_key(tmp_path), algorithm="EdDSA"))
    assert client.scopes == {"dossier:school-enrolment"}


def test_issuing_for_an_unknown_client_fails_with_the_registry_named(tmp_path):
    with pytest.raises(TokenError, match="api_clients.yaml"):
        issue(tmp_path, "made-up")


def test_the_rate_limit_allows_a_burst_then_the_sustained_rate():
    limiter, client = RateLimiter(), Client("c", frozenset(), "p", requests_per_minute=60)
    assert sum(limiter.allow(client, now=0.0) for _ in range(100)) == 60
    assert not limiter.allow(client, now=0.5)
    assert limiter.allow(client, now=1.01)   # one a second
    assert not limiter.allow(client, now=1.02)
