import pytest

from reelforge import client as client_module


@pytest.fixture(autouse=True)
def reelforge_home(tmp_path, monkeypatch):
    """Every test gets its own data dir: job log, logs and default outputs."""
    home = tmp_path / "home"
    monkeypatch.setenv("REELFORGE_HOME", str(home))
    for var in ("REELFORGE_OUTPUT", "REELFORGE_NOVA_BACKEND", "REELFORGE_ENDPOINT", "REELFORGE_WORKERS"):
        monkeypatch.delenv(var, raising=False)
    yield home
    with client_module._runtimes_lock:
        runtimes = list(client_module._runtimes.values())
        client_module._runtimes.clear()
    for runtime in runtimes:
        runtime.stop()
