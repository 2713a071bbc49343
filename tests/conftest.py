from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from stack.services.stack import Stack

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real market data folder {SHARED_DATA} is absent (it ships beside the repo in CI)")
    return SHARED_DATA


def _missing_tools() -> list[str]:
    from stack.services.base import ServiceError
    from stack.services.postgres import bin_dir

    missing = [t for t in ("java", "mvn", "redis-server") if shutil.which(t) is None]
    try:
        bin_dir()
    except ServiceError:
        missing.append("postgresql-15")
    return missing


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The whole stack (Kafka KRaft, PostgreSQL 15, Redis) on private ports under a temporary state dir, shared by
    every test module that asks for it; fails loudly when a service cannot start. Skips only where the
    tools cannot be installed here (no apt-get, or no mvn to fetch the broker)."""
    from stack.services.stack import Stack
    from stack.settings import for_state_dir

    missing = _missing_tools()
    if missing:
        if shutil.which("apt-get") is None or shutil.which("mvn") is None:
            pytest.skip(f"stack integration needs {', '.join(missing)}; this machine has no apt-get/mvn to install "
                        "them")
        pytest.fail(f"missing {', '.join(missing)}: apt-get install maven openjdk-17-jre-headless postgresql-15 "
                    "redis-server (see .ci/run)")
    # mkdtemp is private (0700); PostgreSQL runs as the postgres user when we are root and must traverse it
    state = tempfile.mkdtemp(prefix="cdx-stack-")
    os.chmod(state, 0o755)
    st = Stack(for_state_dir(state))
    try:
        st.up(topics=False, schema=False)
        yield st
    finally:
        st.down()
        shutil.rmtree(state, ignore_errors=True)
