"""Who may see the console, and who may act in it.

Two ways in, either or both configured (nothing configured: the console does not exist, 404):
- a token (`SYNCER_CONSOLE_TOKEN` for operators, `SYNCER_CONSOLE_VIEWER_TOKEN` for viewers), typed
  once on the login page, which then sets a session cookie, or sent by a script as
  `Authorization: Bearer <token>`;
- a header set by an authenticating proxy in front of syncer (`SYNCER_CONSOLE_TRUSTED_HEADER`, e.g.
  oauth2-proxy's `X-Forwarded-Email`), whose value must be on `SYNCER_CONSOLE_OPERATORS` or
  `SYNCER_CONSOLE_VIEWERS`. Only safe when nothing reaches `syncer web` except through that proxy,
  which must overwrite the header (oauth2-proxy does).

The session cookie carries no secret: a role, an expiry and an HMAC over both, keyed by a digest of
the tokens (changing a token signs everyone out). It is Secure, HttpOnly and SameSite=Strict.

Every form carries a CSRF value that must equal the `syncer_console_csrf` cookie (double submit: a
page of another site can neither read that cookie nor set it), and a browser's own
`Sec-Fetch-Site`, when sent, must say the form came from this site. Requests signed in by the
`Authorization` header need neither: a browser never adds that header by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from enum import IntEnum
from fnmatch import fnmatchcase

from syncer.errors import ConfigError
from syncer.settings import Settings

SESSION_COOKIE = "syncer_console_session"
CSRF_COOKIE = "syncer_console_csrf"
SESSION_SECONDS = 12 * 3600


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2  # also retries and drops dead letters, unlinks, starts a reconcile


@dataclass(frozen=True)
class Visitor:
    """A signed-in person: who (a name to show and to record as the cause of what they do) and
    their role; `by_header` when the Authorization header signed them in (no CSRF check needed)."""

    name: str
    role: Role
    by_header: bool = False

    @property
    def operator(self) -> bool:
        return self.role >= Role.OPERATOR


def _patterns(text: str) -> tuple[str, ...]:
    return tuple(p.strip().lower() for p in text.split(",") if p.strip())


@dataclass(frozen=True)
class Access:
    operator_token: str | None
    viewer_token: str | None
    trusted_header: str | None
    operators: tuple[str, ...]
    viewers: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        operator = settings.console_token.get_secret_value() if settings.console_token else None
        viewer = settings.console_viewer_token.get_secret_value() if settings.console_viewer_token else None
        header = (settings.console_trusted_header or "").strip() or None
        access = cls(operator or None, viewer or None, header,
                     _patterns(settings.console_operators), _patterns(settings.console_viewers))
        if access.operator_token and access.operator_token == access.viewer_token:
            raise ConfigError("SYNCER_CONSOLE_VIEWER_TOKEN must differ from SYNCER_CONSOLE_TOKEN")
        for name, token in (("SYNCER_CONSOLE_TOKEN", operator), ("SYNCER_CONSOLE_VIEWER_TOKEN", viewer)):
            if token and len(token) < 16:
                raise ConfigError(f"{name}: use at least 16 characters (e.g. `openssl rand -hex 16`)")
        if header and not (access.operators or access.viewers):
            raise ConfigError(
                "SYNCER_CONSOLE_TRUSTED_HEADER is set but nobody may use the console: list people in "
                "SYNCER_CONSOLE_OPERATORS or SYNCER_CONSOLE_VIEWERS"
            )
        return access

    def describe(self) -> str:
        """One line for `syncer check-config`: whether the console is on, and who gets in how."""
        if not self.enabled:
            return "console: off (set SYNCER_CONSOLE_TOKEN or SYNCER_CONSOLE_TRUSTED_HEADER)"
        ways = []
        if self.has_login:
            tokens = (("operator", self.operator_token), ("viewer", self.viewer_token))
            roles = [name for name, token in tokens if token]
            ways.append(f"token sign-in ({', '.join(roles)})")
        if self.trusted_header:
            ways.append(f"the proxy's {self.trusted_header} for {len(self.operators)} operator and "
                        f"{len(self.viewers)} viewer pattern(s)")
        return "console: on, " + "; ".join(ways)

    @property
    def enabled(self) -> bool:
        return bool(self.operator_token or self.viewer_token or self.trusted_header)

    @property
    def has_login(self) -> bool:
        return bool(self.operator_token or self.viewer_token)

    # --- tokens --------------------------------------------------------------------------------

    def role_of_token(self, given: str) -> Role | None:
        """The role a token grants; both compared in constant time, so the answer's timing tells
        nothing about either token."""
        given_bytes = given.encode()
        found: Role | None = None
        for token, role in ((self.operator_token, Role.OPERATOR), (self.viewer_token, Role.VIEWER)):
            if token and hmac.compare_digest(given_bytes, token.encode()):
                found = role
        return found

    def _session_key(self) -> bytes:
        material = f"syncer-console-session\0{self.operator_token or ''}\0{self.viewer_token or ''}"
        return hashlib.sha256(material.encode()).digest()

    def session_value(self, role: Role, *, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + SESSION_SECONDS)
        body = f"v1.{int(role)}.{expires}"
        return f"{body}.{self._mac(body)}"

    def _mac(self, body: str) -> str:
        return hmac.new(self._session_key(), body.encode(), hashlib.sha256).hexdigest()

    def role_of_session(self, value: str, *, now: float | None = None) -> Role | None:
        if not self.has_login:
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != "v1" or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        body, mac = ".".join(parts[:3]), parts[3]
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        if int(parts[2]) < (now if now is not None else time.time()):
            return None
        role = int(parts[1])
        if role not in (Role.VIEWER, Role.OPERATOR):
            return None
        # A role whose token has been removed since the cookie was set signs nobody in.
        if not (self.operator_token if role == Role.OPERATOR else self.viewer_token):
            return None
        return Role(role)

    # --- the proxy's header --------------------------------------------------------------------

    def role_of_person(self, person: str) -> Role | None:
        who = person.strip().lower()
        if not who:
            return None
        if any(fnmatchcase(who, pattern) for pattern in self.operators):
            return Role.OPERATOR
        if any(fnmatchcase(who, pattern) for pattern in self.viewers):
            return Role.VIEWER
        return None

    # --- who is asking -------------------------------------------------------------------------

    def visitor(self, headers: dict[str, str], cookies: dict[str, str]) -> Visitor | None:
        """The signed-in person, by the Authorization header, the session cookie or the proxy's
        header, in that order; None for anyone else. `headers` keys are lower case."""
        authorization = headers.get("authorization", "")
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            role = self.role_of_token(credential.strip())
            return Visitor(f"token ({role.name.lower()})", role, by_header=True) if role else None
        session = cookies.get(SESSION_COOKIE)
        if session:
            role = self.role_of_session(session)
            if role is not None:
                return Visitor(f"token ({role.name.lower()})", role)
        if self.trusted_header:
            person = headers.get(self.trusted_header.lower(), "")
            role = self.role_of_person(person)
            if role is not None:
                return Visitor(person.strip(), role)
        return None


def new_csrf_value() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(visitor: Visitor, cookie: str | None, submitted: str | None, fetch_site: str | None) -> bool:
    """Whether a form submission is this person's own, from a page of this console."""
    if visitor.by_header:
        return True
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())
