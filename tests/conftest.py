import os
import uuid

import pytest

from reelforge.client import embedded as client_module


@pytest.fixture(autouse=True)
def reelforge_home(tmp_path, monkeypatch):
    """Every test gets its own data dir: job log, logs and default outputs."""
    home = tmp_path / "home"
    monkeypatch.setenv("REELFORGE_HOME", str(home))
    for var in ("REELFORGE_OUTPUT", "REELFORGE_NOVA_BACKEND", "REELFORGE_ENDPOINT", "REELFORGE_DATABASE_URL", "REELFORGE_FORWARD"):
        monkeypatch.delenv(var, raising=False)
    for var in [v for v in os.environ if v.startswith("REELFORGE_") and v.endswith("_S")]:
        monkeypatch.delenv(var)
    # Jobs run in worker threads of the test process: fast, and stopped with the test. The default
    # (the data dir's background worker process) has tests of its own in test_background_worker.py.
    monkeypatch.setenv("REELFORGE_WORKERS", "1")
    monkeypatch.setenv("REELFORGE_BACKGROUND_WORKER", "never")
    yield home
    with client_module._runtimes_lock:
        runtimes = list(client_module._runtimes.values())
        client_module._runtimes.clear()
    for runtime in runtimes:
        runtime.stop()


@pytest.fixture(autouse=True)
def engine_registry(monkeypatch):
    """The registered engines, for one test: what a test registers is gone after it.

    Engines a test module registers when it is imported (its module-level ``@register_engine``) are
    registered before any test runs, so every test starts from those.
    """
    from reelforge import engines

    monkeypatch.setattr(engines, "_extra", dict(engines._extra))
    return engines


@pytest.fixture
def register_engines(engine_registry):
    """``register_engines(A, B, ...)``: register engine classes for this test only."""

    def register(*classes):
        for cls in classes:
            engine_registry.register_engine(cls)

    return register


@pytest.fixture
def background_worker(reelforge_home, monkeypatch):
    """The default set-up: jobs run in the data dir's background worker process (stopped after the test)."""
    import signal

    from reelforge.jobs.background import background_pid

    monkeypatch.delenv("REELFORGE_WORKERS")
    monkeypatch.delenv("REELFORGE_BACKGROUND_WORKER")
    yield reelforge_home
    pid = background_pid(reelforge_home)
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


PG_URL = os.environ.get("REELFORGE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def pg_available() -> bool:
    try:
        import psycopg

        psycopg.connect(PG_URL, connect_timeout=2).close()
        return True
    except Exception:
        return False


@pytest.fixture
def pg_url():
    if not pg_available():
        pytest.skip(f"no PostgreSQL at {PG_URL} (set REELFORGE_TEST_POSTGRES)")
    import psycopg

    schema = "rf_" + uuid.uuid4().hex[:10]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    from reelforge.jobs.postgres import close_pools

    close_pools(schema)  # a pool per test schema would hold its connections until the run ends
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
