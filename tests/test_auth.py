"""API keys: salted scrypt hashes at rest, constant-time checks, roles, reloads, and the FastAPI dependency."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest
from fastapi import Depends, FastAPI

from serving.auth import KEY_FILE, ApiKeyStore, AuthConfig, Principal, Role, authenticator

FAST = AuthConfig(scrypt_n=2**10)  # cheap hashes keep the tests quick; the default cost is checked once below


@pytest.fixture
def store(tmp_path: Path) -> ApiKeyStore:
    return ApiKeyStore.in_state_dir(tmp_path, FAST)


def secret_of(key: str) -> str:
    return key.split("_", 2)[2]


class TestStore:
    def test_add_then_verify_gives_the_principal(self, store: ApiKeyStore) -> None:
        key = store.add("alice", "trader")
        p = store.verify(key)
        assert p is not None and (p.name, p.role) == ("alice", Role.TRADER)
        assert key.startswith(f"cdx_{p.key_id}_") and len(secret_of(key)) == 43
        assert store.verify(key) == p  # second time from the per-process cache
        assert [(k.name, k.role) for k in store.list()] == [("alice", Role.TRADER)]

    def test_file_holds_salted_scrypt_hashes_only(self, store: ApiKeyStore, tmp_path: Path) -> None:
        keys = [store.add("alice", "trader"), store.add("bob", "viewer")]
        raw = (tmp_path / KEY_FILE).read_text()
        for k in keys:
            assert k not in raw and secret_of(k) not in raw
        recs = json.loads(raw)["keys"]
        assert len({r["salt"] for r in recs}) == 2 and len({r["hash"] for r in recs}) == 2
        for k, r in zip(keys, recs, strict=True):
            # the stored hash is scrypt of the key under the record's own salt and cost
            want = hashlib.scrypt(k.encode(), salt=bytes.fromhex(r["salt"]), n=r["n"], r=r["r"], p=r["p"], dklen=32)
            assert want.hex() == r["hash"]
        assert stat.S_IMODE(os.stat(tmp_path / KEY_FILE).st_mode) == 0o600
        assert not [p for p in tmp_path.iterdir() if p.name != KEY_FILE]  # no temporary file left behind

    def test_wrong_keys_are_refused(self, store: ApiKeyStore) -> None:
        key = store.add("alice", "trader")
        other = store.add("bob", "viewer")
        last = key[-1]
        tampered = key[:-1] + ("A" if last != "A" else "B")
        forged = f"cdx_{other.split('_')[1]}_{secret_of(key)}"  # bob's id with alice's secret
        unknown_id = "cdx_000000000000_" + secret_of(key)
        for bad in [tampered, forged, unknown_id, "", "cdx", key + "x", key.upper(), " " + key, key * 3,
                    "cdx_" + "é" * 56, "Bearer " + key]:
            assert store.verify(bad) is None, bad
        assert store.verify(key) is not None and store.verify(other) is not None

    def test_keys_survive_a_restart_and_other_processes_are_seen(self, store: ApiKeyStore, tmp_path: Path) -> None:
        key = store.add("alice", "trader")
        again = ApiKeyStore.in_state_dir(tmp_path, FAST)  # e.g. the demo started later
        assert again.verify(key) == store.verify(key)
        late = again.add("carol", "viewer")  # e.g. `commodex apikey add` while the demo runs
        p = store.verify(late)
        assert p is not None and p.role == Role.VIEWER

    def test_remove_revokes_even_a_cached_key(self, store: ApiKeyStore, tmp_path: Path) -> None:
        key = store.add("alice", "trader")
        assert store.verify(key) is not None
        cli = ApiKeyStore.in_state_dir(tmp_path, FAST)
        assert cli.remove("alice") and not cli.remove("alice")
        assert store.verify(key) is None and len(store) == 0

    def test_names_roles_and_duplicates_are_checked(self, store: ApiKeyStore) -> None:
        store.add("alice", Role.TRADER)
        with pytest.raises(ValueError, match="exists already"):
            store.add("alice", "viewer")
        with pytest.raises(ValueError, match="unknown role"):
            store.add("mallory", "admin")
        for bad in ["", "a b", "-x", "x" * 65, "ali\nce", "a/b"]:
            with pytest.raises(ValueError, match="key name"):
                store.add(bad, "viewer")
        assert [k.name for k in store.list()] == ["alice"]

    def test_a_corrupt_key_file_is_an_error_not_an_empty_store(self, tmp_path: Path) -> None:
        (tmp_path / KEY_FILE).write_text('{"version": 1, "keys": [{"name": "x"}]}')
        with pytest.raises(msgspec.ValidationError):
            ApiKeyStore.in_state_dir(tmp_path, FAST)

    def test_default_cost_roundtrip(self, tmp_path: Path) -> None:
        s = ApiKeyStore.in_state_dir(tmp_path)
        key = s.add("alice", "viewer")
        rec = json.loads((tmp_path / KEY_FILE).read_text())["keys"][0]
        assert (rec["n"], rec["r"], rec["p"]) == (2**14, 8, 1)
        assert ApiKeyStore.in_state_dir(tmp_path).verify(key) is not None

    def test_config_checks(self) -> None:
        for bad in ({"scrypt_n": 1000}, {"scrypt_n": 1}, {"scrypt_r": 0}, {"scrypt_p": 0}):
            with pytest.raises(ValueError):
                AuthConfig(**bad)

    def test_keys_never_reach_the_logs(self, store: ApiKeyStore, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        key = store.add("alice", "trader")
        store.verify(key)
        store.verify(key[:-1] + ("A" if key[-1] != "A" else "B"))
        store.verify("cdx_000000000000_" + secret_of(key))
        store.verify("garbage")
        assert "alice" in caplog.text and "refused" in caplog.text  # the logging path did run
        assert key not in caplog.text and secret_of(key) not in caplog.text

    def test_roles_are_ordered(self) -> None:
        assert Role.TRADER.allows(Role.VIEWER) and Role.TRADER.allows(Role.TRADER)
        assert Role.VIEWER.allows(Role.VIEWER) and not Role.VIEWER.allows(Role.TRADER)


# -- the FastAPI dependency ------------------------------------------------------------------------------------


@pytest.fixture
async def client(store: ApiKeyStore) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    viewer, trader = Depends(authenticator(store, Role.VIEWER)), Depends(authenticator(store, Role.TRADER))

    @app.get("/read")
    async def read(p: Principal = viewer) -> dict[str, str]:
        return {"name": p.name, "role": p.role.value}

    @app.post("/write")
    async def write(p: Principal = trader) -> dict[str, str]:
        return {"name": p.name}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


async def test_dependency_reads_bearer_or_x_api_key(client: httpx.AsyncClient, store: ApiKeyStore) -> None:
    key = store.add("alice", "trader")
    for headers in ({"Authorization": f"Bearer {key}"}, {"Authorization": f"bearer {key}"}, {"X-API-Key": key},
                    {"x-api-key": key}):
        r = await client.post("/write", headers=headers)
        assert r.status_code == 200 and r.json() == {"name": "alice"}, headers


async def test_dependency_401_and_403(client: httpx.AsyncClient, store: ApiKeyStore) -> None:
    viewer = store.add("bob", "viewer")
    r = await client.get("/read")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    for headers in ({"Authorization": "Bearer nope"}, {"Authorization": f"Basic {viewer}"}, {"X-API-Key": ""},
                    {"X-API-Key": viewer[:-2]}):
        assert (await client.get("/read", headers=headers)).status_code == 401, headers
    assert (await client.get("/read", headers={"X-API-Key": viewer})).json() == {"name": "bob", "role": "viewer"}
    r = await client.post("/write", headers={"X-API-Key": viewer})
    assert r.status_code == 403 and "trader" in r.json()["detail"]


# -- the CLI (commodex apikey) -----------------------------------------------------------------------------------


def test_cli_prints_the_key_once_and_stores_only_its_hash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from commodex.cli import main

    st = ["--state-dir", str(tmp_path)]
    try:
        main(["apikey", "list", *st])
    except SystemExit:
        pytest.skip("commodex/cli.py has no `apikey` command yet (diff in the trading API report)")
    capsys.readouterr()
    assert main(["apikey", "add", "alice", "--role", "trader", *st]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    p = ApiKeyStore.in_state_dir(tmp_path, FAST).verify(key)
    assert p is not None and (p.name, p.role) == ("alice", Role.TRADER)
    assert key not in out.err and key not in (tmp_path / KEY_FILE).read_text()
    assert main(["apikey", "add", "alice", *st]) == 2  # names are unique
    assert main(["apikey", "list", *st]) == 0
    listed = capsys.readouterr().out
    assert "alice" in listed and "trader" in listed and key not in listed
    assert main(["apikey", "remove", "alice", *st]) == 0
    assert ApiKeyStore.in_state_dir(tmp_path, FAST).verify(key) is None
