"""OpenID Connect login: authorization code flow with PKCE, state and nonce; the id_token checked via JWKS."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import timedelta
from typing import Any

import httpx
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import delete

from beamhub.config import Settings
from beamhub.db import Database, utcnow
from beamhub.errors import NotReady, Unauthenticated
from beamhub.identity.login.models import OidcFlow
from beamhub.identity.login.service import same_secret

PENDING_TTL = 600
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


class OidcLogin:
    """The facility's single sign-on as an OpenID Connect relying party."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.issuer = (settings.oidc_issuer or "").rstrip("/")
        self.redirect_uri = f"{settings.callback_url}/login/oidc/callback"
        self._metadata: dict[str, Any] | None = None

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document, fetched once."""
        if self._metadata is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            try:
                async with httpx.AsyncClient(timeout=10) as client:
                    response = await client.get(url)
                    response.raise_for_status()
            except httpx.HTTPError as exc:
                raise NotReady("the single sign-on provider does not answer (%(error)s)",
                               error=type(exc).__name__) from exc
            document = response.json()
            if document.get("issuer", "").rstrip("/") != self.issuer:
                raise NotReady("the single sign-on provider's discovery names another issuer")
            self._metadata = document
        return self._metadata

    async def begin(self, next_path: str) -> tuple[str, str]:
        """(URL of the provider's login page, value of the cookie that binds the flow to this browser)."""
        metadata = await self.metadata()
        flow = secrets.token_urlsafe(32)
        pending = OidcFlow(digest=_digest(flow), state=secrets.token_urlsafe(24), nonce=secrets.token_urlsafe(24),
                           verifier=secrets.token_urlsafe(48), next_path=next_path, created_at=utcnow())
        await asyncio.to_thread(self._store, pending)
        url = add_params_to_uri(metadata["authorization_endpoint"], [
            ("response_type", "code"), ("client_id", self.settings.oidc_client_id or ""),
            ("redirect_uri", self.redirect_uri), ("scope", " ".join(self.settings.oidc_scopes)),
            ("state", pending.state), ("nonce", pending.nonce),
            ("code_challenge", create_s256_code_challenge(pending.verifier)), ("code_challenge_method", "S256"),
        ])
        return url, flow

    def _store(self, pending: OidcFlow) -> None:
        """Keep a flow in the database (its callback may reach another worker or replica); expired ones go."""
        with self.db.session() as db:
            db.execute(delete(OidcFlow).where(OidcFlow.created_at < utcnow() - timedelta(seconds=PENDING_TTL)))
            db.add(pending)

    def _take(self, flow: str | None, state: str | None) -> OidcFlow:
        """The flow this browser started, once (whoever deletes its row takes it); 401 if none, expired, or the
        state differs."""
        pending = None
        if flow:
            with self.db.session() as db:
                found = db.get(OidcFlow, _digest(flow))
                taken = db.execute(delete(OidcFlow).where(OidcFlow.digest == _digest(flow))).rowcount == 1
                pending = found if taken else None
        fresh = pending is not None and pending.created_at > utcnow() - timedelta(seconds=PENDING_TTL)
        if pending is None or not fresh or not same_secret(state, pending.state):
            raise Unauthenticated("this single sign-on login was not started here, has expired, or its state is wrong")
        return pending

    async def finish(self, flow: str | None, state: str | None, code: str | None,
                     error: str | None = None) -> tuple[str, dict[str, Any], str]:
        """(username, id_token claims, next path) of a completed flow; 401 if anything does not check out."""
        pending = await asyncio.to_thread(self._take, flow, state)
        if error or not code:
            raise Unauthenticated("the single sign-on provider refused the login: %(error)s", error=error or "no code")
        metadata = await self.metadata()
        id_token = await self._exchange(metadata, code, pending.verifier)
        claims = await self._validate(metadata, id_token, pending.nonce)
        username = claims.get(self.settings.oidc_username_claim)
        if not isinstance(username, str) or not username:
            raise Unauthenticated("the id_token has no %(claim)r claim", claim=self.settings.oidc_username_claim)
        return username, claims, pending.next_path

    async def _exchange(self, metadata: dict[str, Any], code: str, verifier: str) -> str:
        """The id_token for an authorization code (client_secret_basic, PKCE verifier)."""
        secret = self.settings.oidc_client_secret
        auth = httpx.BasicAuth(self.settings.oidc_client_id or "", secret.get_secret_value()) if secret else None
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                "code_verifier": verifier}
        if auth is None:
            form["client_id"] = self.settings.oidc_client_id or ""
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.post(metadata["token_endpoint"], data=form, auth=auth,
                                             headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise NotReady("the single sign-on provider does not answer (%(error)s)",
                           error=type(exc).__name__) from exc
        if response.status_code != 200:
            raise Unauthenticated("the single sign-on provider did not accept the authorization code")
        id_token = response.json().get("id_token")
        if not isinstance(id_token, str):
            raise Unauthenticated("the single sign-on provider returned no id_token")
        return id_token

    async def _validate(self, metadata: dict[str, Any], id_token: str, nonce: str) -> dict[str, Any]:
        """The claims of an id_token whose signature, iss, aud, exp and nonce check out."""
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.get(metadata["jwks_uri"])
                response.raise_for_status()
            keys = KeySet.import_key_set(response.json())
            token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            registry = jwt.JWTClaimsRegistry(
                leeway=60, iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.settings.oidc_client_id},
                exp={"essential": True}, nonce={"essential": True, "value": nonce})
            registry.validate(token.claims)
        except httpx.HTTPError as exc:
            raise NotReady("cannot fetch the provider's keys (%(error)s)", error=type(exc).__name__) from exc
        except (JoseError, ValueError) as exc:
            raise Unauthenticated("the id_token is not valid: %(reason)s", reason=exc) from exc
        return dict(token.claims)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def local_path(value: str | None) -> str:
    """A redirect target on this site: a path starting with one "/", else "/"."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return "/" if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value) else value
