"""Shared fixtures: a fixed clock, SQLite / PostgreSQL / MariaDB stores, and a temporary copy of the configs.

PostgreSQL (127.0.0.1:5432, user postgres) and MariaDB (127.0.0.1:3306, root) tests skip with a reason when the
server does not answer, except when ``CI=true``: there a missing server is a failure, so CI never reports a skipped
database test as passed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from monitor.clock import FixedClock
from monitor.store import Store

if TYPE_CHECKING:
    from tests.test_pipeline import Rig

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("PAYMON_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MARIADB_URL = os.environ.get("PAYMON_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/mysql")
T0 = datetime(2026, 11, 26, 3, 0, 0, tzinfo=UTC)
#: How long a test waits for something that must happen (orders created, a notify delivered, a daemon's cycle).
#: Generous on purpose: CI shares a busy 2-core machine, where everything is late. A test waits for the condition,
#: never for a fixed time, so this only matters when the test fails anyway (``bench/stress_test.sh`` checks).
PATIENCE_S = 60.0



async def wait_until(condition: Callable[[], bool], timeout: float = PATIENCE_S) -> bool:
    """``assert await wait_until(lambda: cond)``: poll ``cond`` on the running loop until it holds (True) or
    ``timeout`` passes (False). For what must happen "soon", instead of sleeping and hoping it did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _unavailable(what: str, exc: Exception) -> None:
    reason = f"{what} is not reachable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires it")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's real secrets."""
    for name in list(os.environ):
        if name.startswith(("EPAY_", "TELEGRAM_", "SHOP_", "PAYMON_SECRET")):
            monkeypatch.delenv(name)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def sqlite_store(tmp_path: Path, clock: FixedClock) -> Iterator[Store]:
    store = Store.open(f"sqlite:///{tmp_path / 'paymon.db'}", clock=clock)
    yield store
    store.close()


def _server_database(base_url: str, kind: str) -> Iterator[str]:
    url = make_url(base_url)
    what = f"{kind} at {url.host}:{url.port}"
    name = f"paymon_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "not available"
        admin.dispose()
        _unavailable(what, exc)
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if url.get_backend_name() == "postgresql":
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    yield from _server_database(PG_URL, "PostgreSQL")


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A fresh, empty MariaDB database, dropped afterwards."""
    yield from _server_database(MARIADB_URL, "MariaDB")


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FixedClock) -> Iterator[Store]:
    """The same store tests on SQLite, PostgreSQL and MariaDB."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'paymon.db'}"
        s = Store.open(url, clock=clock)
        yield s
        s.close()
    else:
        if request.param == "postgres":
            gen = _server_database(PG_URL, "PostgreSQL")
        else:
            gen = _server_database(MARIADB_URL, "MariaDB")
        url = next(gen)
        s = Store.open(url, clock=clock)
        try:
            yield s
        finally:
            s.close()
            gen.close()


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A temporary copy of the shipped config folder (safe to edit and to let paymon rewrite)."""
    dst = tmp_path / "config"
    shutil.copytree(ROOT / "config", dst)
    return dst


class SimThread:
    """The epay simulator on its own event loop in a background thread, for code that runs its own loop
    (the CLI) or another process (``paymon run``)."""

    def __init__(self) -> None:
        import asyncio
        import threading

        from monitor.sim.server import SimServer

        self.loop = asyncio.new_event_loop()
        self.server = SimServer()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def call(self, fn, *args, **kw):  # type: ignore[no-untyped-def]
        """Run a plain function on the simulator's loop (fault knobs are not thread-safe)."""
        import asyncio

        async def run():  # type: ignore[no-untyped-def]
            return fn(*args, **kw)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def close(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def sim_thread() -> Iterator[SimThread]:
    sim = SimThread()
    yield sim
    sim.close()


@pytest.fixture
def rig(tmp_path: Path, clock: FixedClock) -> Iterator[Rig]:
    """The pipeline's test rig (``tests.test_pipeline.Rig``): both config files, the real app on a fixed clock."""
    from tests.test_pipeline import Rig

    (tmp_path / "cfg" / "var").mkdir(parents=True)
    r = Rig(tmp_path / "cfg", clock)
    yield r
    r.app.pipeline.close()
    r.app.store.close()
