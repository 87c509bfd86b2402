from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import re
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from realtime.core.auth import (
    ANONYMOUS,
    FROM_COOKIE,
    FROM_HEADER,
    FROM_QUERY,
    MAX_TOKEN_LENGTH,
    Grant,
    TokenVerifier,
    extract_token,
    find_token,
    mint_token,
    parse_duration,
)
from realtime.core.errors import AuthError
from realtime.core.topics import PatternSet

NOW = 1_700_000_000
SECRET = "s3cret-for-tests-only-0123456789abcdef"  # 38 bytes: above HS256's 32-byte minimum


@dataclasses.dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str
    algorithm: str


def _pems(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, algorithm: str) -> KeyPair:
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return KeyPair(private_pem, public_pem, algorithm)


@pytest.fixture(scope="module")
def rsa_keys() -> KeyPair:
    return _pems(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


@pytest.fixture(scope="module")
def ec_keys() -> KeyPair:
    return _pems(ec.generate_private_key(ec.SECP256R1()), "ES256")


@pytest.fixture(params=["rsa", "ec"])
def asymmetric_keys(request: pytest.FixtureRequest) -> KeyPair:
    keys: KeyPair = request.getfixturevalue(f"{request.param}_keys")
    return keys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: object) -> str:
    return _b64(json.dumps(value).encode())


def _hs256_by_hand(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """Sign without PyJWT, which rightly refuses to HMAC with a PEM public key."""
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _hs256(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


def _refusal(verifier: TokenVerifier, token: str, *, now: float = NOW) -> AuthError:
    with pytest.raises(AuthError) as info:
        verifier.verify(token, now=now)
    assert info.value.status == 401
    if token:
        assert token not in info.value.message
    return info.value


# -- round trips --------------------------------------------------------------------------------


def test_hs256_round_trip_carries_subject_patterns_and_expiry() -> None:
    token = mint_token(
        secret=SECRET,
        subject="user-7",
        subscribe=["user:7", "dashboard:*"],
        publish=["orders:*"],
        ttl_s=60,
        now=NOW + 0.9,
    )
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    grant = TokenVerifier(secret=SECRET).verify(token, now=NOW + 30)
    assert grant == Grant(
        subject="user-7",
        subscribe=PatternSet(["user:7", "dashboard:*"]),
        publish=PatternSet(["orders:*"]),
        expires_at=NOW + 60,
    )
    assert grant.can_subscribe("dashboard:cpu")
    assert grant.can_subscribe("user:7")
    assert not grant.can_subscribe("user:8")
    assert grant.can_publish("orders:eu")
    assert not grant.can_publish("dashboard:cpu")


def test_asymmetric_round_trip_picks_the_algorithm_from_the_key(asymmetric_keys: KeyPair) -> None:
    token = mint_token(
        private_key=asymmetric_keys.private_pem, subject="cron", publish=["orders:*"], now=NOW
    )
    assert jwt.get_unverified_header(token)["alg"] == asymmetric_keys.algorithm
    verifier = TokenVerifier(public_key=asymmetric_keys.public_pem)
    assert verifier.algorithm == asymmetric_keys.algorithm
    grant = verifier.verify(token, now=NOW)
    assert grant.subject == "cron"
    assert grant.can_publish("orders:1")
    assert not grant.subscribe
    assert grant.expires_at == NOW + 3600


def test_mint_token_sets_iat_and_exp_and_omits_an_absent_subject() -> None:
    token = mint_token(secret=SECRET, subscribe=["a"], ttl_s=90, now=NOW + 0.5)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {
        "iat": NOW,
        "exp": NOW + 90,
        "realtime": {"subscribe": ["a"], "publish": []},
    }


def test_token_without_exp_never_expires() -> None:
    token = mint_token(secret=SECRET, subject="forever", ttl_s=None, now=NOW)
    assert "exp" not in jwt.decode(token, SECRET, algorithms=["HS256"])
    grant = TokenVerifier(secret=SECRET).verify(token, now=NOW + 10 * 365 * 86400)
    assert grant.expires_at is None
    assert grant.subject == "forever"


def test_verify_uses_the_clock_when_now_is_not_given() -> None:
    token = mint_token(secret=SECRET, subscribe=["a"])
    assert TokenVerifier(secret=SECRET).verify(token).can_subscribe("a")


def test_token_without_realtime_claim_is_an_identity_without_rights() -> None:
    grant = TokenVerifier(secret=SECRET).verify(_hs256({"sub": "u1"}), now=NOW)
    assert grant == Grant(
        subject="u1", subscribe=PatternSet([]), publish=PatternSet([]), expires_at=None
    )
    assert not grant.can_subscribe("u1")


def test_realtime_claim_with_missing_lists_and_unknown_keys_grants_what_it_lists() -> None:
    token = _hs256({"realtime": {"subscribe": ["a:*"], "presence": True}})
    grant = TokenVerifier(secret=SECRET).verify(token, now=NOW)
    assert grant.subject is None
    assert grant.can_subscribe("a:b")
    assert not grant.publish


def test_anonymous_has_no_subject_and_no_rights() -> None:
    assert ANONYMOUS.subject is None
    assert ANONYMOUS.expires_at is None
    assert not ANONYMOUS.can_subscribe("a")
    assert not ANONYMOUS.can_publish("a")


def test_grant_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ANONYMOUS.subject = "someone"  # type: ignore[misc]


# -- time claims ---------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 1, 86400])
def test_expired_token_is_token_expired(offset: int) -> None:
    token = mint_token(secret=SECRET, subscribe=["a"], ttl_s=60, now=NOW)
    error = _refusal(TokenVerifier(secret=SECRET), token, now=NOW + 60 + offset)
    assert error.code == "token_expired"
    assert "expired" in error.message


def test_leeway_accepts_a_token_just_past_exp() -> None:
    token = mint_token(secret=SECRET, ttl_s=60, now=NOW)
    assert TokenVerifier(secret=SECRET, leeway_s=30).verify(token, now=NOW + 89)
    assert _refusal(TokenVerifier(secret=SECRET, leeway_s=30), token, now=NOW + 90).code == (
        "token_expired"
    )


def test_nbf_in_the_future_is_invalid_token() -> None:
    token = _hs256({"nbf": NOW + 600})
    error = _refusal(TokenVerifier(secret=SECRET), token)
    assert error.code == "invalid_token"
    assert "nbf" in error.message


def test_nbf_within_leeway_or_past_is_accepted() -> None:
    token = _hs256({"nbf": NOW + 20})
    assert TokenVerifier(secret=SECRET, leeway_s=30).verify(token, now=NOW) == ANONYMOUS
    assert TokenVerifier(secret=SECRET).verify(token, now=NOW + 20) == ANONYMOUS


def test_future_iat_is_not_refused() -> None:
    assert TokenVerifier(secret=SECRET).verify(_hs256({"iat": NOW + 600}), now=NOW) == ANONYMOUS


def test_fractional_exp_is_floored_in_the_grant() -> None:
    grant = TokenVerifier(secret=SECRET).verify(_hs256({"exp": NOW + 10.75}), now=NOW)
    assert grant.expires_at == NOW + 10


# -- remembered tokens ---------------------------------------------------------------------------


def test_a_remembered_token_still_expires_on_time() -> None:
    verifier = TokenVerifier(secret=SECRET)
    token = mint_token(secret=SECRET, publish=["a"], ttl_s=60, now=NOW)
    assert verifier.verify(token, now=NOW).can_publish("a")
    assert verifier.verify(token, now=NOW + 59).can_publish("a")
    assert _refusal(verifier, token, now=NOW + 60).code == "token_expired"


def test_a_remembered_token_is_refused_before_its_nbf() -> None:
    verifier = TokenVerifier(secret=SECRET)
    token = _hs256({"nbf": NOW + 20})
    assert verifier.verify(token, now=NOW + 20) == ANONYMOUS
    assert _refusal(verifier, token, now=NOW + 19).code == "invalid_token"


def test_a_repeated_token_is_checked_for_its_signature_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    verifier = TokenVerifier(secret=SECRET)
    token = mint_token(secret=SECRET, publish=["a"], ttl_s=60, now=NOW)
    for _ in range(3):
        assert verifier.verify(token, now=NOW).can_publish("a")
    assert decoded == [token]


def test_a_refused_token_is_checked_again_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    verifier = TokenVerifier(secret=SECRET)
    forged = jwt.encode({"sub": "x"}, "another-secret-" + "y" * 32, algorithm="HS256")
    expired = mint_token(secret=SECRET, ttl_s=60, now=NOW - 120)
    for token in (forged, expired, forged, expired):
        _refusal(verifier, token)
    assert decoded == [forged, expired, forged, expired]


def test_a_token_differing_by_one_character_is_verified_afresh() -> None:
    verifier = TokenVerifier(secret=SECRET)
    token = mint_token(secret=SECRET, publish=["a"], ttl_s=60, now=NOW)
    assert verifier.verify(token, now=NOW).can_publish("a")
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert _refusal(verifier, tampered).code == "invalid_token"


def test_the_verifier_remembers_at_most_cache_size_tokens() -> None:
    verifier = TokenVerifier(secret=SECRET, cache_size=2)
    tokens = [mint_token(secret=SECRET, subject=f"u{i}", ttl_s=60, now=NOW) for i in range(5)]
    for token in tokens:
        verifier.verify(token, now=NOW)
    assert list(verifier._verified) == tokens[-2:]  # the least recently used went first
    verifier.verify(tokens[3], now=NOW)
    verifier.verify(tokens[0], now=NOW)
    assert list(verifier._verified) == [tokens[3], tokens[0]]


def test_a_verifier_with_cache_size_zero_remembers_nothing() -> None:
    verifier = TokenVerifier(secret=SECRET, cache_size=0)
    token = mint_token(secret=SECRET, ttl_s=60, now=NOW)
    assert verifier.verify(token, now=NOW).subject is None
    assert not verifier._verified


# -- refusals ------------------------------------------------------------------------------------


def test_bad_signature_is_invalid_token() -> None:
    token = mint_token(secret="another-secret-of-at-least-32-bytes!!", ttl_s=None)
    error = _refusal(TokenVerifier(secret=SECRET), token)
    assert error.code == "invalid_token"
    assert "signature" in error.message


def test_tampered_payload_is_invalid_token() -> None:
    header, _, signature = mint_token(secret=SECRET, subscribe=["a"], now=NOW).split(".")
    forged = _segment({"realtime": {"subscribe": ["*"]}})
    assert _refusal(TokenVerifier(secret=SECRET), f"{header}.{forged}.{signature}").code == (
        "invalid_token"
    )


def test_token_signed_by_another_key_pair_is_invalid_token(asymmetric_keys: KeyPair) -> None:
    other = _pems(ec.generate_private_key(ec.SECP256R1()), "ES256")
    if asymmetric_keys.algorithm == "RS256":
        other = _pems(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")
    token = mint_token(private_key=other.private_pem, now=NOW)
    error = _refusal(TokenVerifier(public_key=asymmetric_keys.public_pem), token)
    assert error.code == "invalid_token"


def test_alg_none_token_is_invalid_token() -> None:
    token = f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment({'sub': 'x'})}."
    error = _refusal(TokenVerifier(secret=SECRET), token)
    assert error.code == "invalid_token"
    assert "HS256" in error.message


def test_hs256_signed_with_the_public_key_is_refused_by_an_rs256_verifier(
    rsa_keys: KeyPair,
) -> None:
    claims = {"sub": "attacker", "realtime": {"subscribe": ["*"], "publish": ["*"]}}
    token = _hs256_by_hand({"alg": "HS256", "typ": "JWT"}, claims, rsa_keys.public_pem.encode())
    error = _refusal(TokenVerifier(public_key=rsa_keys.public_pem), token)
    assert error.code == "invalid_token"
    assert "RS256" in error.message


@pytest.mark.parametrize(
    ("signer", "verifier"),
    [("secret", "rsa"), ("secret", "ec"), ("rsa", "ec"), ("ec", "rsa"), ("rsa", "secret")],
)
def test_token_of_another_algorithm_is_invalid_token(
    signer: str, verifier: str, rsa_keys: KeyPair, ec_keys: KeyPair
) -> None:
    pairs = {"rsa": rsa_keys, "ec": ec_keys}
    if signer == "secret":
        token = mint_token(secret=SECRET, now=NOW)
    else:
        token = mint_token(private_key=pairs[signer].private_pem, now=NOW)
    if verifier == "secret":
        checker = TokenVerifier(secret=SECRET)
    else:
        checker = TokenVerifier(public_key=pairs[verifier].public_pem)
    assert _refusal(checker, token).code == "invalid_token"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-token",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "....",
        "é.é.é",
        f"{_segment([1])}.{_segment({})}.abc",
        f"{_segment({'alg': 'HS256'})}.{_segment([1])}.abc",
        f"{_segment({'alg': ['HS256']})}.{_segment({})}.abc",
        f"{_segment({'alg': 'HS256', 'kid': 5})}.{_segment({})}.abc",
        f"{_segment({'alg': 'HS256', 'crit': ['exp']})}.{_segment({})}.abc",
    ],
)
def test_malformed_token_is_invalid_token(token: str) -> None:
    assert _refusal(TokenVerifier(secret=SECRET), token).code == "invalid_token"


@pytest.mark.parametrize(
    ("claims", "named"),
    [
        ({"realtime": "everything"}, "realtime"),
        ({"realtime": ["a"]}, "realtime"),
        ({"realtime": None}, "realtime"),
        ({"realtime": {"subscribe": "a:*"}}, "realtime.subscribe"),
        ({"realtime": {"subscribe": None}}, "realtime.subscribe"),
        ({"realtime": {"subscribe": [1]}}, "realtime.subscribe"),
        ({"realtime": {"subscribe": ["ok", ["nested"]]}}, "realtime.subscribe"),
        ({"realtime": {"subscribe": ["has space"]}}, "realtime.subscribe"),
        ({"realtime": {"publish": [""]}}, "realtime.publish"),
        ({"realtime": {"publish": {"a": 1}}}, "realtime.publish"),
        ({"sub": 5}, "sub"),
        ({"exp": "tomorrow"}, "exp"),
        ({"exp": True}, "exp"),
        ({"exp": None}, "exp"),
        ({"nbf": "now"}, "nbf"),
        ({"iat": [NOW]}, "iat"),
        # Regression (issue 11, finding 3): 10**400 cannot become a float: OverflowError, a 500.
        ({"exp": 10**400}, "exp"),
        ({"nbf": -(10**400)}, "nbf"),
        ({"iat": 10**400}, "iat"),
        ({"exp": 2**53 + 1}, "exp"),
        ({"exp": 1e300}, "exp"),
        ({"aud": "someone-else"}, "aud"),
        ({"jti": 5}, "jti"),
    ],
)
def test_claims_of_the_wrong_shape_are_invalid_token(claims: dict[str, Any], named: str) -> None:
    error = _refusal(TokenVerifier(secret=SECRET), _hs256(claims))
    assert error.code == "invalid_token"
    assert named in error.message


# -- construction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({}, "exactly one"),
        ({"secret": SECRET, "public_key": "x"}, "exactly one"),
        ({"secret": ""}, "HS256"),
        ({"secret": "short"}, "too weak"),
        ({"public_key": "not a pem"}, "PEM"),
        ({"public_key": "-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----"}, "\\n"),
        ({"secret": SECRET, "leeway_s": -1}, "leeway"),
    ],
)
def test_verifier_refuses_bad_configuration_with_a_sentence(
    kwargs: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(says)) as info:
        TokenVerifier(**kwargs)
    assert str(info.value).endswith(".")


def test_verifier_refuses_a_public_key_as_hmac_secret(rsa_keys: KeyPair) -> None:
    with pytest.raises(ValueError, match="HS256"):
        TokenVerifier(secret=rsa_keys.public_pem)


def test_verifier_given_a_private_key_says_so(rsa_keys: KeyPair) -> None:
    with pytest.raises(ValueError, match="private key"):
        TokenVerifier(public_key=rsa_keys.private_pem)


@pytest.mark.parametrize(
    ("private", "says"),
    [
        (lambda: ec.generate_private_key(ec.SECP384R1()), "P-256"),
        (ed25519.Ed25519PrivateKey.generate, "only RSA"),
        # The weak key whose refusal is the point of the case.
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "2048"),  # noqa: S505
    ],
    ids=["ec-p384", "ed25519", "rsa-1024"],
)
def test_unsupported_or_weak_keys_are_refused(private: Any, says: str) -> None:
    key = private()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match=says):
        TokenVerifier(public_key=public_pem.decode())
    with pytest.raises(ValueError, match=says):
        mint_token(private_key=private_pem.decode())


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({}, "exactly one"),
        ({"secret": SECRET, "private_key": "x"}, "exactly one"),
        ({"secret": SECRET, "subscribe": ["bad pattern"]}, "'bad pattern'"),
        ({"secret": SECRET, "publish": ["ok", ""]}, "''"),
        ({"secret": SECRET, "ttl_s": 0}, "positive"),
        ({"secret": SECRET, "ttl_s": -5}, "positive"),
        ({"secret": "short"}, "too weak"),
        ({"private_key": "garbage"}, "PEM"),
    ],
)
def test_mint_token_refuses_bad_arguments(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        mint_token(**kwargs)


# -- durations and token sources -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("12h", 43200),
        ("30d", 2_592_000),
        ("2w", 1_209_600),
        (" 1h ", 3600),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "0", "0s", "-5", "-5m", "1.5h", "5y", "h", "5 m", "5M", "1h30m", "١٢", "9" * 13, "ten"],
)
def test_parse_duration_refuses_anything_else_with_a_sentence(text: str) -> None:
    with pytest.raises(ValueError, match="for example"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("authorization", "cookie", "query", "expected"),
    [
        ("Bearer h", "c", "q", "h"),
        ("bearer h", None, None, "h"),
        ("BEARER  h ", None, None, "h"),
        (None, "c", "q", "c"),
        ("", "c", "q", "c"),
        (None, None, "q", "q"),
        ("", "", "q", "q"),
        (None, "", "", None),
        (None, None, None, None),
    ],
)
def test_extract_token_precedence(
    authorization: str | None, cookie: str | None, query: str | None, expected: str | None
) -> None:
    assert extract_token(authorization=authorization, cookie=cookie, query=query) == expected


@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer a b", "Token abc", "abc", " "],
)
def test_extract_token_refuses_a_malformed_authorization_header(authorization: str) -> None:
    with pytest.raises(AuthError) as info:
        extract_token(authorization=authorization, cookie="c", query="q")
    assert info.value.code == "invalid_authorization"
    assert info.value.status == 401
    assert "dXNlcjpwYXNz" not in info.value.message


def test_a_numeric_date_at_the_edge_of_exact_json_integers_is_accepted() -> None:
    grant = TokenVerifier(secret=SECRET).verify(_hs256({"exp": 2**53}), now=NOW)
    assert grant.expires_at == 2**53


def test_a_token_too_long_to_be_ours_is_refused_before_any_signature_check() -> None:
    verifier = TokenVerifier(secret=SECRET)
    error = _refusal(verifier, "x" * (MAX_TOKEN_LENGTH + 1))
    assert error.code == "token_too_large"
    assert str(MAX_TOKEN_LENGTH) in error.message
    subject = "s" * ((MAX_TOKEN_LENGTH - 200) * 3 // 4)  # base64 makes it a third longer
    long_but_ours = _hs256({"sub": subject})
    assert MAX_TOKEN_LENGTH - 200 < len(long_but_ours) <= MAX_TOKEN_LENGTH
    assert verifier.verify(long_but_ours, now=NOW).subject == subject


@pytest.mark.parametrize(
    ("authorization", "cookie", "query", "expected"),
    [
        ("Bearer h", "c", "q", ("h", FROM_HEADER)),
        (None, "c", "q", ("c", FROM_COOKIE)),
        (None, "", "q", ("q", FROM_QUERY)),
        (None, None, None, None),
    ],
)
def test_find_token_says_where_the_token_came_from(
    authorization: str | None, cookie: str | None, query: str | None, expected: object
) -> None:
    assert find_token(authorization=authorization, cookie=cookie, query=query) == expected


# -- verified_claims: the same key for a door with other token shapes (the Mercure hub) -----------


def test_verified_claims_gives_a_signed_tokens_header_and_claims_aud_and_all() -> None:
    claims = {"sub": "s", "aud": "https://hub.example/.well-known/mercure", "exp": NOW + 60}
    token = jwt.encode(claims, SECRET, algorithm="HS256", headers={"typ": "at+jwt"})
    header, got = TokenVerifier(secret=SECRET).verified_claims(token, now=NOW)
    assert header["typ"] == "at+jwt"
    assert got == claims


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (
            jwt.encode({"exp": NOW + 60}, "another-secret-" + "y" * 40, algorithm="HS256"),
            "invalid_token",
        ),
        (jwt.encode({"exp": NOW - 1}, SECRET, algorithm="HS256"), "token_expired"),
        (jwt.encode({"nbf": NOW + 60}, SECRET, algorithm="HS256"), "invalid_token"),
        (f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment({'sub': 'x'})}.", "invalid_token"),
        ("x" * 5000, "token_too_large"),
    ],
)
def test_verified_claims_refuses_as_verify_does(token: str, code: str) -> None:
    with pytest.raises(AuthError) as raised:
        TokenVerifier(secret=SECRET).verified_claims(token, now=NOW)
    assert raised.value.code == code
