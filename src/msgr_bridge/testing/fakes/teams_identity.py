"""The Microsoft identity platform half of the Teams fake: a throwaway TLS certificate, OIDC discovery,
``/devicecode``, ``/authorize`` and ``/token`` (device_code, refresh_token and authorization_code grants),
in the shapes msal 1.39 reads
(``id_token`` with ``aud``/``iss``/``exp``/``nonce``, ``client_info``).

Errors come back as the identity platform sends them:
``{"error", "error_description": "AADSTS…", "error_codes"}``
(``authorization_pending`` while a device code waits, ``invalid_grant`` with AADSTS50173 once a user's
grant is revoked, ``unauthorized_client`` for an unknown client id).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import ipaddress
import json
import secrets
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

if TYPE_CHECKING:
    from .teams import FakeTeams


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 and localhost: (cert/CA file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "msgr-bridge teams fake")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "teams-fake-ca.pem", directory / "teams-fake-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def aad_error(status: int, error: str, code: int, text: str) -> web.Response:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace = secrets.token_hex(8)
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {trace}\r\n"
        f"Timestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": trace,
    }
    return web.json_response(body, status=status)


@dataclass
class DeviceCode:
    device_code: str
    user_code: str
    scope: str
    expires_at: float
    user_id: str | None = None
    declined: bool = False
    polls: int = 0


@dataclass
class Identity:
    """Device codes, authorization codes and refresh tokens of the fake tenant."""

    fake: FakeTeams
    device_codes: dict[str, DeviceCode] = field(default_factory=dict)
    auth_codes: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """code -> (user id, nonce, scope)"""
    pkce: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """code -> (code_challenge, code_challenge_method, redirect_uri) given on /authorize"""
    decline_authorize: bool = False
    """The person declines consent on /authorize: redirected back with ``error=access_denied``."""
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    """refresh token -> user id"""
    revoked: dict[str, str] = field(default_factory=dict)
    """user id -> why their grants were revoked (the AADSTS text)"""
    default_user: str | None = None
    """Who signs in on ``/authorize`` (the fake has no login page)."""
    approve_next: str | None = None
    """Who signs in with the next device code issued (see ``approve_pending``)."""

    @property
    def issuer(self) -> str:
        return f"{self.fake.base_url}/{self.fake.tenant_id}/v2.0"

    # --- what a test does as the person in the browser ----------------------------------------------

    def approve_pending(self, user_id: str) -> list[str]:
        """The person enters every waiting user code and signs in as ``user_id``; returns the codes. With
        none waiting, the next device code is approved as soon as it is issued (the person is quick)."""
        done = []
        for code in self.device_codes.values():
            if code.user_id is None and not code.declined:
                code.user_id = user_id
                done.append(code.user_code)
        if not done:
            self.approve_next = user_id
        return done

    def decline_pending(self) -> None:
        for code in self.device_codes.values():
            if code.user_id is None:
                code.declined = True

    def revoke(self, user_id: str, reason: str = "") -> None:
        """Revoke every grant of ``user_id`` (consent withdrawn, password changed): refreshes fail with
        ``invalid_grant`` and the user's access tokens stop working."""
        self.revoked[user_id] = reason or (
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. "
            "The user might have changed or reset their password."
        )
        self.refresh_tokens = {k: v for k, v in self.refresh_tokens.items() if v != user_id}
        self.fake.access_tokens = {k: v for k, v in self.fake.access_tokens.items() if v[0] != user_id}

    # --- routes --------------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        t = "/{tenant}"
        return [
            web.get(t + "/v2.0/.well-known/openid-configuration", self.discovery),
            web.post(t + "/oauth2/v2.0/devicecode", self.devicecode),
            web.get(t + "/oauth2/v2.0/authorize", self.authorize),
            web.post(t + "/oauth2/v2.0/token", self.token),
        ]

    def _tenant_ok(self, request: web.Request) -> bool:
        return request.match_info["tenant"] in (self.fake.tenant_id, "organizations", "common")

    async def discovery(self, request: web.Request) -> web.Response:
        self.fake.record(request)
        base = f"{self.fake.base_url}/{request.match_info['tenant']}/oauth2/v2.0"
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "device_authorization_endpoint": f"{base}/devicecode",
                "end_session_endpoint": f"{base}/logout",
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "tenant_region_scope": "EU",
            }
        )

    def _client_refused(self, client_id: str | None) -> web.Response | None:
        if client_id != self.fake.client_id:
            return aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.fake.tenant_id}'.",
            )
        return None

    async def devicecode(self, request: web.Request) -> web.Response:
        self.fake.record(request)
        form = await request.post()
        refused = self._client_refused(str(form.get("client_id")))
        if refused is not None or not self._tenant_ok(request):
            return refused or aad_error(400, "invalid_request", 90002, "Tenant not found.")
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        code = DeviceCode(secrets.token_urlsafe(24), user_code, str(form.get("scope", "")), time.time() + 900)
        code.user_id, self.approve_next = self.approve_next, None
        self.device_codes[code.device_code] = code
        uri = f"{self.fake.base_url}/devicelogin"
        return web.json_response(
            {
                "device_code": code.device_code,
                "user_code": user_code,
                "verification_uri": uri,
                "expires_in": 900,
                "interval": 1,
                "message": f"To sign in, use a web browser to open the page {uri} and enter the code "
                f"{user_code} to authenticate.",
            }
        )

    async def authorize(self, request: web.Request) -> web.Response:
        """No login page: the ``default_user`` signs in at once and is redirected back with a code."""
        self.fake.record(request)
        q = request.query
        refused = self._client_refused(q.get("client_id"))
        if refused is not None:
            return refused
        user = self.default_user
        if user is None:
            return web.Response(status=400, text="the fake has no default_user to sign in")
        if self.decline_authorize:
            return self._back(
                q,
                {
                    "error": "access_denied",
                    "error_description": "AADSTS65004: User declined to consent to access the app.",
                    "state": q.get("state", ""),
                },
            )
        code = secrets.token_urlsafe(24)
        self.auth_codes[code] = (user, q.get("nonce", ""), q.get("scope", ""))
        self.pkce[code] = (
            q.get("code_challenge", ""),
            q.get("code_challenge_method", "plain"),
            q.get("redirect_uri", ""),
        )
        return self._back(q, {"code": code, "state": q.get("state", ""), "session_state": "fake"})

    @staticmethod
    def _back(q: Any, answer: dict[str, str]) -> web.Response:
        """Send the browser back: with ``response_mode=form_post`` a page whose form POSTs the answer to
        the redirect URI (as the identity platform does), else a redirect with the answer in the query."""
        if q.get("response_mode") == "form_post":
            fields = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
                for k, v in answer.items()
            )
            page = (
                f'<html><body onload="document.forms[0].submit()"><form method="POST" '
                f'action="{html.escape(q.get("redirect_uri", ""))}">{fields}</form></body></html>'
            )
            return web.Response(text=page, content_type="text/html")
        raise web.HTTPFound(f"{q.get('redirect_uri', '')}?{urlencode(answer)}")

    def _pkce_refused(self, code: str, form: Any) -> web.Response | None:
        """RFC 7636: the verifier must hash to the challenge given on /authorize, and the redirect URI
        must be the same."""
        challenge, method, redirect = self.pkce.pop(code, ("", "plain", ""))
        verifier = str(form.get("code_verifier", ""))
        if challenge:
            made = _b64(hashlib.sha256(verifier.encode()).digest()) if method == "S256" else verifier
            if made != challenge:
                return aad_error(
                    400, "invalid_grant", 501481, "The Code_Verifier does not match the code_challenge."
                )
        if redirect and str(form.get("redirect_uri", "")) != redirect:
            return aad_error(
                400, "invalid_grant", 50148, "The redirect_uri does not match the one the code was issued to."
            )
        return None

    async def token(self, request: web.Request) -> web.Response:
        self.fake.record(request)
        form = await request.post()
        refused = self._client_refused(str(form.get("client_id")))
        if refused is not None:
            return refused
        grant = str(form.get("grant_type", ""))
        scope = str(form.get("scope", ""))
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            code = self.device_codes.get(str(form.get("device_code")))
            if code is None or time.time() > code.expires_at:
                return aad_error(
                    400,
                    "expired_token",
                    70020,
                    "The provided value for the input parameter "
                    "'device_code' is not valid. This device code has expired.",
                )
            code.polls += 1
            if code.declined:
                return aad_error(400, "authorization_declined", 70016, "The user declined the sign-in.")
            if code.user_id is None:
                return aad_error(
                    400,
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                )
            del self.device_codes[code.device_code]
            return self._grant(code.user_id, code.scope or scope, nonce="")
        if grant == "refresh_token":
            # Refresh tokens are not single-use: a rotated one stays valid until it expires or is revoked.
            user_id = self.refresh_tokens.get(str(form.get("refresh_token")))
            if user_id is None:
                return self._invalid_grant(None)
            return self._grant(user_id, scope, nonce="")
        if grant == "authorization_code":
            entry = self.auth_codes.pop(str(form.get("code")), None)
            if entry is None:
                return aad_error(400, "invalid_grant", 70000, "The provided authorization code is invalid.")
            bad = self._pkce_refused(str(form.get("code")), form)
            if bad is not None:
                return bad
            user_id, nonce, code_scope = entry
            return self._grant(user_id, code_scope or scope, nonce=nonce)
        return aad_error(
            400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant}'."
        )

    def _invalid_grant(self, user_id: str | None) -> web.Response:
        reasons = list(self.revoked.values())
        text = reasons[-1] if reasons else "The refresh token has expired or is invalid."
        return aad_error(400, "invalid_grant", 50173 if reasons else 700082, text)

    def _grant(self, user_id: str, scope: str, *, nonce: str) -> web.Response:
        if user_id in self.revoked:
            return self._invalid_grant(user_id)
        user = self.fake.users[user_id]
        now = int(time.time())
        lifetime = int(self.fake.token_lifetime_s)
        claims: dict[str, Any] = {
            "aud": self.fake.client_id,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "sub": hashlib.sha256(user_id.encode()).hexdigest()[:32],
            "oid": user_id,
            "tid": self.fake.tenant_id,
            "name": user["displayName"],
            "preferred_username": user["userPrincipalName"],
            "ver": "2.0",
        }
        if nonce:
            claims["nonce"] = nonce
        id_token = ".".join(
            [_b64(json.dumps({"alg": "none", "typ": "JWT"}).encode()), _b64(json.dumps(claims).encode()), ""]
        )
        access = "fake-at-" + secrets.token_urlsafe(24)
        refresh = "fake-rt-" + secrets.token_urlsafe(24)
        self.fake.access_tokens[access] = (user_id, time.time() + lifetime)
        self.refresh_tokens[refresh] = user_id
        self.fake.grants.append(user_id)
        return web.json_response(
            {
                "token_type": "Bearer",
                "scope": " ".join(
                    s for s in scope.split() if s not in ("openid", "profile", "offline_access")
                )
                or "https://graph.microsoft.com/.default",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": access,
                "refresh_token": refresh,
                "id_token": id_token,
                "client_info": _b64(json.dumps({"uid": user_id, "utid": self.fake.tenant_id}).encode()),
            }
        )
