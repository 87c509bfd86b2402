"""Tokens: what a JWT grants, how it is verified and minted, and where a request carries it.

This module owns the ``Auth`` section of DESIGN.md as pure functions: a verified token becomes a
:class:`Grant` (subject, subscribe and publish patterns, expiry), and :func:`extract_token`
applies the documented precedence of token sources. It does no I/O and never touches Flask: the
web layer passes in header, cookie and query values and turns
:class:`~realtime.core.errors.AuthError` into a 401.

Intentional choices, so nobody "fixes" them:

* A verifier accepts exactly one algorithm, fixed by its key (HS256 for a secret, RS256 for an
  RSA key, ES256 for an EC P-256 key), never the one the token's header asks for. That is what
  defeats ``alg: none`` and the HS256-signed-with-the-public-key confusion attack.
* Weak keys are refused when the verifier is built (HMAC secrets under 32 bytes, RSA under
  2048 bits) rather than warned about on every request, so a bad ``REALTIME_JWT_SECRET`` fails at
  start-up with a sentence.
* PyJWT checks signatures and claim shapes it knows (``sub``, ``aud``, ``jti``); the time claims
  ``exp``, ``nbf`` and ``iat`` are checked here, against a ``now`` that tests can fix, so expiry
  is tested without sleeping and ``token_expired`` is told apart from other failures.
* ``exp`` is optional: a token without it never expires (``realtime token --ttl`` decides).
  Error messages say why a token was refused and never repeat the token.
* A verifier remembers the tokens it has accepted (a bounded LRU keyed by the exact token
  string), because checking a signature is most of a publish's cost and a publisher sends the same
  token with every request. What a signature proves depends only on the token and the key, both
  fixed for a cache entry; what depends on the clock (``exp``, ``nbf``) is checked again on every
  use, so a remembered token expires exactly when a fresh one would. Refused tokens are never
  remembered, so garbage cannot push valid tokens out.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
import jwt.algorithms
import jwt.exceptions
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from realtime.core.errors import AuthError
from realtime.core.topics import PatternSet

__all__ = [
    "ANONYMOUS",
    "CLAIM",
    "Access",
    "Grant",
    "TokenVerifier",
    "extract_token",
    "find_token",
    "mint_token",
    "parse_duration",
]

#: The private claim holding a token's rights: ``{"subscribe": [...], "publish": [...]}``.
CLAIM = "realtime"


@dataclass(frozen=True)
class Grant:
    """What the bearer of a verified token may do.

    Frozen because one grant is shared by every greenlet serving the connection and must not
    change under them; a new token means a new grant.
    """

    subject: str | None
    subscribe: PatternSet
    publish: PatternSet
    #: The ``exp`` claim in unix seconds, so a stream can end with ``auth_expired`` on time.
    expires_at: int | None

    def can_subscribe(self, topic: str) -> bool:
        return self.subscribe.matches(topic)

    def can_publish(self, topic: str) -> bool:
        return self.publish.matches(topic)


#: The grant of a request without a token: no subject and no rights. Public topics are allowed by
#: the caller through ``REALTIME_PUBLIC_TOPICS``, not through this grant.
ANONYMOUS = Grant(subject=None, subscribe=PatternSet(()), publish=PatternSet(()), expires_at=None)


def _algorithm_for(key: object, *, role: str) -> str:
    """Choose the one signing algorithm a key type allows, so a token's header cannot."""
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ES256"
        raise ValueError(
            f"The JWT {role} key is an EC key on curve {key.curve.name}; "
            "only P-256 (secp256r1, for ES256) is supported."
        )
    raise ValueError(
        f"The JWT {role} key is a {type(key).__name__}; only RSA (RS256) and "
        "EC P-256 (ES256) keys are supported."
    )


def _prepare_key(algorithm: str, key: Any, *, role: str) -> Any:
    """Have PyJWT check a key for ``algorithm`` now, so a weak or wrong key fails at start-up."""
    implementation = jwt.algorithms.get_default_algorithms()[algorithm]
    try:
        prepared = implementation.prepare_key(key)
    except jwt.InvalidKeyError as exc:
        raise ValueError(f"The JWT {role} cannot be used for {algorithm}: {exc}") from exc
    weakness = implementation.check_key_length(prepared)
    if weakness is not None:
        raise ValueError(f"The JWT {role} is too weak for {algorithm}: {weakness}")
    return prepared


def _pem_hint(pem: str) -> str:
    """Name the usual reasons a PEM from an environment variable does not load."""
    if "\\n" in pem and "\n" not in pem:
        return " Its line breaks look escaped as '\\n'; pass real newlines."
    if "CERTIFICATE" in pem:
        return " It looks like a certificate; pass the key itself."
    return ""


def _load_public_key(pem: str) -> object:
    try:
        return serialization.load_pem_public_key(pem.encode("utf-8"))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        hint = _pem_hint(pem)
        if not hint and "PRIVATE KEY" in pem:
            hint = " It looks like a private key; the server needs only the public half."
        raise ValueError(
            "The JWT public key is not a PEM-encoded RSA or EC public key "
            f"('-----BEGIN PUBLIC KEY-----').{hint}"
        ) from exc


def _load_private_key(pem: str) -> object:
    try:
        return serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(
            "The JWT private key is not an unencrypted PEM-encoded RSA or EC private key."
            + _pem_hint(pem)
        ) from exc


def _invalid(message: str) -> AuthError:
    return AuthError(message, code="invalid_token")


def _describe(exc: jwt.PyJWTError, algorithm: str) -> str:
    """Say why PyJWT refused a token in our words: its messages are not a stable contract."""
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return f"The token is not signed with {algorithm}, the only algorithm this server accepts."
    if isinstance(exc, jwt.InvalidSignatureError):
        return "The token's signature does not match the server's key."
    if isinstance(exc, jwt.exceptions.InvalidSubjectError):
        return "The token's sub claim must be a string."
    if isinstance(exc, jwt.InvalidAudienceError):
        return "The token names an audience (aud claim), which this server does not accept."
    if isinstance(exc, jwt.exceptions.InvalidJTIError):
        return "The token's jti claim must be a string."
    if isinstance(exc, jwt.DecodeError):
        return "The token is malformed: it is not a signed JWT whose payload is a JSON object."
    if type(exc) is jwt.InvalidTokenError:
        return "The token's header is malformed or requires an extension this server lacks."
    return f"The token is invalid ({type(exc).__name__})."


#: The largest NumericDate accepted: JSON's exactly representable integers (I-JSON, RFC 7493),
#: some 285 million years. A bigger one (``exp: 10**400``) is not a date but an attack on the
#: arithmetic: it cannot even become a float.
MAX_NUMERIC_DATE = 2**53


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """Read an optional NumericDate claim (RFC 7519 §2), refusing anything but a finite number
    within :data:`MAX_NUMERIC_DATE` of the epoch."""
    if name not in claims:
        return None
    value = claims[name]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not -MAX_NUMERIC_DATE <= value <= MAX_NUMERIC_DATE  # False for NaN; ints never overflow
    ):
        raise _invalid(f"The token's {name} claim must be a number of seconds since the epoch.")
    return float(value)


def _patterns_claim(rights: Mapping[str, Any], name: str) -> PatternSet:
    value = rights.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid(f"The token's {CLAIM}.{name} claim must be a list of strings.")
    try:
        return PatternSet(value)
    except ValueError as exc:
        raise _invalid(f"The token's {CLAIM}.{name} claim holds an invalid pattern. {exc}") from exc


def _grant_from_claims(claims: Mapping[str, Any], expires_at: float | None) -> Grant:
    subject = claims.get("sub")
    if subject is not None and not isinstance(subject, str):
        raise _invalid("The token's sub claim must be a string.")
    if CLAIM not in claims:
        # A valid identity without rights: it may still read public topics.
        return Grant(subject, PatternSet(()), PatternSet(()), _whole(expires_at))
    rights = claims[CLAIM]
    if not isinstance(rights, dict):
        raise _invalid(
            f"The token's {CLAIM} claim must be an object with subscribe and publish lists."
        )
    subscribe = _patterns_claim(rights, "subscribe")
    publish = _patterns_claim(rights, "publish")
    return Grant(subject, subscribe, publish, _whole(expires_at))


def _whole(seconds: float | None) -> int | None:
    return None if seconds is None else math.floor(seconds)


@dataclass(frozen=True, slots=True)
class _Verified:
    """What a verifier remembers of an accepted token: its grant and its time claims."""

    grant: Grant
    expires_at: float | None
    not_before: float | None


#: The longest token accepted, in characters. A header is refused by gunicorn itself above its
#: ``limit_request_field_size`` (8,190 bytes by default, 431); below that, a token too long to be
#: ours gets its own answer (401 ``token_too_large``) instead of a signature check. Our own
#: tokens are a few hundred characters; the longest rights lists fit well within this.
MAX_TOKEN_LENGTH = 4096

#: How many accepted tokens a verifier remembers: enough for every publisher of a busy worker,
#: few enough that the memory stays small (a token is a few hundred bytes).
VERIFIED_CACHE_SIZE = 1024


class TokenVerifier:
    """Verifies tokens with one key and one algorithm, turning them into :class:`Grant` objects.

    Built once at start-up from ``REALTIME_JWT_SECRET`` or ``REALTIME_JWT_PUBLIC_KEY``; every key
    problem is a :class:`ValueError` with a sentence then, so :meth:`verify` only ever fails
    because of the token. Accepted tokens are remembered (see the module docstring), up to
    ``cache_size`` of them; 0 turns that off.
    """

    algorithm: str
    leeway_s: int

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        leeway_s: int = 0,
        cache_size: int = VERIFIED_CACHE_SIZE,
    ) -> None:
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self._cache_size = max(0, cache_size)
        if leeway_s < 0:
            raise ValueError(f"The JWT leeway must be 0 or more seconds, not {leeway_s}.")
        if secret is not None and public_key is None:
            self.algorithm = "HS256"
            self._key = _prepare_key(self.algorithm, secret, role="secret")
        elif public_key is not None and secret is None:
            key = _load_public_key(public_key)
            self.algorithm = _algorithm_for(key, role="public")
            self._key = _prepare_key(self.algorithm, key, role="public key")
        else:
            raise ValueError(
                "Give exactly one of a secret (HS256) or a public key (RS256/ES256) "
                "to verify tokens."
            )
        self.leeway_s = leeway_s

    def verify(self, token: str, *, now: float | None = None) -> Grant:
        """Return the grant of a valid ``token`` or raise :class:`~realtime.core.errors.AuthError`.

        The code is ``token_expired`` for a correctly signed token past its ``exp`` (so a client
        knows to refresh rather than to re-authenticate) and ``invalid_token`` for everything
        else. ``now`` (unix seconds) defaults to the clock.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError(
                f"The token is {len(token)} characters long; the limit is {MAX_TOKEN_LENGTH}.",
                code="token_too_large",
            )
        current = time.time() if now is None else now
        known = self._verified.get(token)
        if known is not None:
            self._check_times(known.expires_at, known.not_before, current)
            # Evicted meanwhile by another thread (KeyError): still verified, just older.
            with contextlib.suppress(KeyError):
                self._verified.move_to_end(token)
            return known.grant
        verified = self._verify_signed(token, current)
        if self._cache_size:
            self._verified[token] = verified
            while len(self._verified) > self._cache_size:
                try:
                    self._verified.popitem(last=False)
                except KeyError:  # emptied meanwhile by another thread
                    break
        return verified.grant

    def _decode(self, token: str, *, check_audience: bool = True) -> dict[str, Any]:
        """The claims of a token signed with this verifier's one algorithm and key; the time
        claims are checked by the caller, against its own clock."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[self.algorithm],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": check_audience,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise _invalid(_describe(exc, self.algorithm)) from exc
        return claims

    def _verify_signed(self, token: str, current: float) -> _Verified:
        """The full check of a token not seen before: signature, claim shapes, then the clock."""
        claims = self._decode(token)
        expires_at = _numeric_date(claims, "exp")
        not_before = _numeric_date(claims, "nbf")
        _numeric_date(claims, "iat")  # shape only: a future iat is clock skew, not an attack
        self._check_times(expires_at, not_before, current)
        return _Verified(_grant_from_claims(claims, expires_at), expires_at, not_before)

    def verified_claims(
        self, token: str, *, now: float | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The header and claims of a token signed with this verifier's key, for a front door
        whose tokens have another shape (the Mercure hub's): the same one algorithm and key,
        ``exp`` and ``nbf`` checked against ``now``, nothing read of the claims beyond. ``aud``
        is left to the caller (a Mercure token names its hub there); refusals are 401 as in
        :meth:`verify`."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError(
                f"The token is {len(token)} characters long; the limit is {MAX_TOKEN_LENGTH}.",
                code="token_too_large",
            )
        claims = self._decode(token, check_audience=False)
        # After the signature, which covers it: the header is what the signer wrote.
        header = jwt.get_unverified_header(token)
        expires_at = _numeric_date(claims, "exp")
        not_before = _numeric_date(claims, "nbf")
        self._check_times(expires_at, not_before, time.time() if now is None else now)
        return header, claims

    def _check_times(self, expires_at: float | None, not_before: float | None, now: float) -> None:
        """``exp`` and ``nbf`` against ``now``: run on every use, remembered token or not."""
        if expires_at is not None and expires_at <= now - self.leeway_s:
            raise AuthError("The token has expired; get a new one.", code="token_expired")
        if not_before is not None and not_before > now + self.leeway_s:
            raise _invalid("The token is not valid yet: its nbf claim is in the future.")


def mint_token(
    *,
    secret: str | None = None,
    private_key: str | None = None,
    subject: str | None = None,
    subscribe: Sequence[str] = (),
    publish: Sequence[str] = (),
    ttl_s: int | None = 3600,
    now: float | None = None,
) -> str:
    """Sign a token granting ``subscribe`` and ``publish`` patterns, for ``realtime token``.

    HS256 with ``secret``, or RS256/ES256 with a PEM ``private_key`` (chosen by the key's type,
    as the verifier does). Patterns are validated here so a typo fails when minting, not when the
    token is first used. ``ttl_s=None`` mints a token without ``exp`` that never expires.
    """
    if ttl_s is not None and ttl_s <= 0:
        raise ValueError(f"A token lifetime must be a positive number of seconds, not {ttl_s}.")
    rights = {"subscribe": list(PatternSet(subscribe)), "publish": list(PatternSet(publish))}
    issued_at = math.floor(time.time() if now is None else now)
    claims: dict[str, Any] = {"iat": issued_at, CLAIM: rights}
    if subject is not None:
        claims["sub"] = subject
    if ttl_s is not None:
        claims["exp"] = issued_at + ttl_s
    if secret is not None and private_key is None:
        algorithm = "HS256"
        key = _prepare_key(algorithm, secret, role="secret")
    elif private_key is not None and secret is None:
        loaded = _load_private_key(private_key)
        algorithm = _algorithm_for(loaded, role="private")
        key = _prepare_key(algorithm, loaded, role="private key")
    else:
        raise ValueError("Give exactly one of a secret (HS256) or a private key (RS256/ES256).")
    return jwt.encode(claims, key, algorithm=algorithm)


_DURATION_RE = re.compile(r"\A([0-9]{1,12})([smhdw]?)\Z")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """Turn ``"90"``, ``"90s"``, ``"15m"``, ``"12h"``, ``"30d"`` or ``"2w"`` into seconds.

    Deliberately small: one number and one unit, because a token lifetime is typed on a command
    line (``realtime token --ttl 30d``) and a misread lifetime is a security bug.
    """
    match = _DURATION_RE.match(text.strip())
    seconds = 0 if match is None else int(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds <= 0:
        raise ValueError(
            f"Duration {text[:40]!r} is invalid: give a positive whole number followed by "
            "s, m, h, d or w (seconds if no unit), for example 90, 15m, 12h or 30d."
        )
    return seconds


#: Where a request's token came from (:func:`find_token`).
FROM_HEADER = "header"
FROM_COOKIE = "cookie"
FROM_QUERY = "query"
#: No token: the host app's authorize hook granted the request (from its session, as a rule),
#: so, like the cookie, it is a credential the browser sends by itself.
FROM_APP = "app"


@dataclass(frozen=True)
class Access:
    """What an app's authorize hook (``@rt.authorize``) grants a request without a token: the
    topic patterns it may follow and publish to (as a token's ``subscribe`` and ``publish``)
    and who it is (a token's ``sub``: presence shows it, rate limits and idempotency keys are
    counted by it)."""

    subscribe: Sequence[str] = ()
    publish: Sequence[str] = ()
    subject: str | None = None

    def grant(self) -> Grant:
        """The :class:`Grant` these rights make; a pattern that is not one raises ValueError
        (a bug in the hook, not the client's error)."""
        if self.subject is not None and (not isinstance(self.subject, str) or not self.subject):
            raise ValueError("Access.subject must be a non-empty string or None.")
        return Grant(self.subject, PatternSet(self.subscribe), PatternSet(self.publish), None)


def find_token(
    *, authorization: str | None, cookie: str | None, query: str | None
) -> tuple[str, str] | None:
    """The request's token and where it came from, in DESIGN.md order: ``Authorization:
    Bearer`` (:data:`FROM_HEADER`), the cookie (:data:`FROM_COOKIE`), the query
    (:data:`FROM_QUERY`); ``None`` without one.

    The header wins because only a deliberate client sets it; the cookie and the query string
    exist for browsers' EventSource and WebSocket, which cannot set headers. A header that is
    present but not ``Bearer <token>`` is an error rather than ignored, so a misconfigured client
    is told instead of silently falling back to a stale cookie. Empty values count as absent.
    Where it came from matters: a browser sends a cookie by itself, even on a request another
    site makes it send (:func:`realtime.core.access.authorize_browser_publish`).
    """
    if authorization:
        parts = authorization.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise AuthError(
                "The Authorization header must be 'Bearer <token>'.",
                code="invalid_authorization",
            )
        return parts[1], FROM_HEADER
    if cookie:
        return cookie, FROM_COOKIE
    if query:
        return query, FROM_QUERY
    return None


def extract_token(
    *, authorization: str | None, cookie: str | None, query: str | None
) -> str | None:
    """The request's token, wherever it came from (:func:`find_token`)."""
    found = find_token(authorization=authorization, cookie=cookie, query=query)
    return None if found is None else found[0]
