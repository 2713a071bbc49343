"""API keys for the mutating (and private) parts of the HTTP API: hashed at rest, checked in constant time.

A key is `cdx_<key id>_<secret>`: the key id (12 hex digits) names the record to check against, the secret is
32 random bytes (urlsafe base64). Only a salted scrypt hash of the whole key is stored, in a JSON file under the
state dir (mode 0600, written atomically); the clear key is returned once by `ApiKeyStore.add` and never
stored or logged. `verify` recomputes the hash and compares with `hmac.compare_digest`; an unknown key id costs
the same scrypt work as a wrong secret. A verified key is remembered for the process as an HMAC of the key
under a random per-process pepper (never the key itself), so scrypt runs once per key, not once per request.
The file is re-read when it changes on disk: `commodex apikey add` works while the demo is running.

Roles: "viewer" reads the trading API; "trader" may also approve, reject, kill and resume.
HTTP: `Authorization: Bearer <key>` or `X-API-Key: <key>`; 401 without a valid key, 403 when the role is too low.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import anyio
import msgspec
from fastapi import HTTPException, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from market.config import Config

__all__ = ["KEY_FILE", "ApiKeyStore", "AuthConfig", "KeyInfo", "Principal", "Role", "authenticator"]

log = logging.getLogger("commodex.auth")

KEY_FILE = "api_keys.json"
KEY_PREFIX = "cdx"
_KEY_RE = re.compile(r"cdx_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")  # token_urlsafe(32) is 43 characters
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_MAX_KEY_CHARS = 128  # anything longer is not a key of ours: refused before any hashing
_HASH_BYTES = 32
_SALT_BYTES = 16


class Role(StrEnum):
    VIEWER = "viewer"
    TRADER = "trader"

    def allows(self, needed: Role) -> bool:
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.VIEWER: 0, Role.TRADER: 1}


class AuthConfig(Config, frozen=True):
    # scrypt cost of new keys (each record keeps its own, so raising it does not lock out older keys)
    scrypt_n: int = 2**14
    scrypt_r: int = 8
    scrypt_p: int = 1

    def __post_init__(self) -> None:
        if self.scrypt_n < 2 or self.scrypt_n & (self.scrypt_n - 1) or self.scrypt_r < 1 or self.scrypt_p < 1:
            raise ValueError("scrypt_n must be a power of 2 >= 2, scrypt_r and scrypt_p >= 1")


class Principal(msgspec.Struct, frozen=True):
    """Who made a request (the key's name and role; never the key)."""

    name: str
    role: Role
    key_id: str


class KeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    name: str
    role: Role
    salt: str  # hex
    hash: str  # hex scrypt(key, salt, n, r, p)
    n: int
    r: int
    p: int
    created_ns: int


class KeyFile(msgspec.Struct, kw_only=True):
    version: int = 1
    keys: list[KeyRecord] = []


class KeyInfo(msgspec.Struct, frozen=True):
    """What `list()` shows about a key (no hash, no salt)."""

    name: str
    role: Role
    key_id: str
    created_ns: int


def _scrypt(key: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem: OpenSSL's default (32 MiB) is too small for n=2**15 and above
    return hashlib.scrypt(key.encode("ascii"), salt=salt, n=n, r=r, p=p, dklen=_HASH_BYTES,
                          maxmem=256 * n * r + (1 << 20))


class ApiKeyStore:
    """API keys hashed with salt in `path` (created on the first `add`). Thread-safe."""

    def __init__(self, path: str | Path, config: AuthConfig | None = None) -> None:
        self.path = Path(path)
        self.config = config or AuthConfig()
        self._lock = threading.Lock()
        self._records: dict[str, KeyRecord] = {}  # key id -> record
        self._file_sig: tuple[int, int, int] | None = None
        self._pepper = secrets.token_bytes(32)  # per process: cache entries are worthless outside it
        self._verified: dict[bytes, Principal] = {}  # HMAC(pepper, key) -> principal, valid keys only
        self._dummy_salt = secrets.token_bytes(_SALT_BYTES)
        self._refresh()

    @classmethod
    def in_state_dir(cls, state_dir: str | Path, config: AuthConfig | None = None) -> ApiKeyStore:
        return cls(Path(state_dir) / KEY_FILE, config)

    # -- management -----------------------------------------------------------------------------------------

    def add(self, name: str, role: Role | str) -> str:
        """Create a key for `name` and return it in clear: the only time it is ever available."""
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError("key name must be 1-64 characters: letters, digits and _ . @ - (not first)")
        try:
            role = Role(role)
        except ValueError:
            raise ValueError(f"unknown role {role!r}; use {', '.join(r.value for r in Role)}") from None
        with self._lock:
            self._refresh_locked()
            if any(r.name == name for r in self._records.values()):
                raise ValueError(f"a key named {name!r} exists already (remove it first)")
            key_id = secrets.token_hex(6)
            while key_id in self._records:
                key_id = secrets.token_hex(6)
            key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
            salt = secrets.token_bytes(_SALT_BYTES)
            c = self.config
            rec = KeyRecord(key_id=key_id, name=name, role=role, salt=salt.hex(),
                            hash=_scrypt(key, salt, c.scrypt_n, c.scrypt_r, c.scrypt_p).hex(),
                            n=c.scrypt_n, r=c.scrypt_r, p=c.scrypt_p, created_ns=time.time_ns())
            self._write_locked({**self._records, key_id: rec})
        log.info("API key added: name=%s role=%s id=%s", name, role.value, key_id)
        return key

    def remove(self, name: str) -> bool:
        """Revoke the key named `name` (False if there is none)."""
        with self._lock:
            self._refresh_locked()
            keep = {k: r for k, r in self._records.items() if r.name != name}
            if len(keep) == len(self._records):
                return False
            self._write_locked(keep)
        log.info("API key removed: name=%s", name)
        return True

    def list(self) -> list[KeyInfo]:
        with self._lock:
            self._refresh_locked()
            recs = sorted(self._records.values(), key=lambda r: (r.created_ns, r.name))
        return [KeyInfo(r.name, r.role, r.key_id, r.created_ns) for r in recs]

    def __len__(self) -> int:
        with self._lock:
            self._refresh_locked()
            return len(self._records)

    # -- checking ------------------------------------------------------------------------------------------

    def verify(self, key: str) -> Principal | None:
        """The principal of a valid key, else None. Blocking (scrypt, tens of ms) the first time per key."""
        if not isinstance(key, str) or len(key) > _MAX_KEY_CHARS or not (m := _KEY_RE.fullmatch(key)):
            log.debug("API key refused: not a key")
            return None
        mac = hmac.new(self._pepper, key.encode("ascii"), hashlib.sha256).digest()
        with self._lock:
            self._refresh_locked()
            hit = self._verified.get(mac)
            rec = self._records.get(m.group(1))
        if hit is not None:
            return hit
        if rec is None:
            c = self.config  # the same work as a real check: response time does not tell key ids apart
            hmac.compare_digest(_scrypt(key, self._dummy_salt, c.scrypt_n, c.scrypt_r, c.scrypt_p), bytes(32))
            log.debug("API key refused: unknown key id")
            return None
        if not hmac.compare_digest(_scrypt(key, bytes.fromhex(rec.salt), rec.n, rec.r, rec.p),
                                   bytes.fromhex(rec.hash)):
            log.debug("API key refused: wrong secret for key %s", rec.name)
            return None
        principal = Principal(rec.name, rec.role, rec.key_id)
        with self._lock:
            if self._records.get(rec.key_id) == rec:  # not revoked meanwhile
                self._verified[mac] = principal
        return principal

    # -- file ----------------------------------------------------------------------------------------------

    def _refresh(self) -> None:
        with self._lock:
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        """Re-read the file if it changed (another process added or removed a key)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            sig = None
        else:
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        if sig == self._file_sig:
            return
        records: dict[str, KeyRecord] = {}
        if sig is not None:
            doc = msgspec.json.decode(self.path.read_bytes(), type=KeyFile)
            if doc.version != 1:
                raise ValueError(f"{self.path}: unsupported key file version {doc.version}")
            records = {r.key_id: r for r in doc.keys}
        self._records, self._file_sig = records, sig
        self._verified.clear()  # a removed key must stop working at once

    def _write_locked(self, records: dict[str, KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = msgspec.json.format(msgspec.json.encode(KeyFile(keys=list(records.values()))), indent=2)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self._file_sig = None
        self._refresh_locked()


# -- FastAPI ---------------------------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="API key: `commodex apikey add NAME --role trader`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (alternative to Bearer)")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def authenticator(keys: ApiKeyStore, needed: Role) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the request's principal, 401 without a valid key, 403 below `needed`."""

    async def principal(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        header: Annotated[str | None, Security(_header)],
    ) -> Principal:
        key = bearer.credentials if bearer is not None else header
        if not key:
            raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                                headers=_CHALLENGE)
        found = await anyio.to_thread.run_sync(keys.verify, key)  # scrypt stays off the event loop
        if found is None:
            raise HTTPException(401, "invalid API key", headers=_CHALLENGE)
        if not found.role.allows(needed):
            raise HTTPException(403, f"role {found.role.value!r} may not do this (needs {needed.value!r})")
        return found

    return principal
