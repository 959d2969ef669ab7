"""Shared fixtures: one real Synapse for the whole run, a fake Mistral per test, users.

The Synapse server is shared to keep the suite fast (~2 s to boot), so tests must not
assume an empty server: ``new_user`` makes unique user ids, and rooms are always new.
If Synapse is not installed the ``synapse`` fixture errors out: integration tests fail,
they never skip. Set ``TCHAP_KEEP_SYNAPSE=1`` to keep its temp dir (logs) after the run.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import nio
import pytest

from sandbox.fake_mistral import FakeMistral
from tests.support.matrix_client import close_all, make_client
from tests.support.synapse import RegisteredUser, SynapseServer

NewUser = Callable[..., Awaitable[RegisteredUser]]
UserClient = Callable[..., Awaitable[nio.AsyncClient]]

# After the summary, how long the process may take to exit before it is made to.
EXIT_GRACE_SECONDS = 60.0
_EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    """A thread a failed test left running (an aiosqlite connection it never closed) keeps
    the process alive after the summary, and CI would wait for its time limit. A daemon timer
    names the threads and exits, with the run's status or 1 (the leak is a defect itself);
    a process that exits on its own ends the timer with it."""
    status = config.stash.get(_EXIT_STATUS, 1) or 1

    def force_exit() -> None:
        alive = [t.name for t in threading.enumerate() if not t.daemon and t.is_alive()]
        sys.stderr.write(
            f"\nThe test process did not exit {EXIT_GRACE_SECONDS:.0f} s after the run: "
            f"threads still running {alive}. Exiting with status {status}.\n"
        )
        sys.stderr.flush()
        os._exit(status)

    timer = threading.Timer(EXIT_GRACE_SECONDS, force_exit)
    timer.daemon = True
    timer.start()


@pytest.fixture(scope="session")
def synapse() -> Iterator[SynapseServer]:
    """The session's homeserver (server_name ``localhost``), stopped at the end."""
    server = SynapseServer(keep_workdir=os.environ.get("TCHAP_KEEP_SYNAPSE") == "1")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeMistral]:
    """A fresh fake Mistral API: point the bot at ``fake_llm.base_url``."""
    server = FakeMistral()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def new_user(synapse: SynapseServer) -> NewUser:
    """Factory: ``await new_user("alice")`` registers ``@alice-<random>:localhost``.

    The suffix keeps ids unique on the shared server. Extra keyword arguments go to
    ``SynapseServer.register`` (password, admin, displayname).
    """

    async def factory(localpart: str = "user", **kwargs: object) -> RegisteredUser:
        unique = f"{localpart.lower()}-{secrets.token_hex(4)}"
        return await synapse.register(unique, **kwargs)  # type: ignore[arg-type]

    return factory


@pytest.fixture
async def user_client(
    synapse: SynapseServer, new_user: NewUser, tmp_path: Path
) -> AsyncIterator[UserClient]:
    """Factory: ``await user_client(user_or_localpart, encryption=False)`` -> synced nio client.

    Pass a ``RegisteredUser`` or a localpart (a new unique user is then registered).
    Every client is closed at teardown.
    """
    clients: list[nio.AsyncClient] = []

    async def factory(user: RegisteredUser | str, encryption: bool = False) -> nio.AsyncClient:
        if isinstance(user, str):
            user = await new_user(user)
        store_dir = tmp_path / "nio" / f"{user.localpart}-{user.device_id}"
        client = await make_client(synapse, user, store_dir=store_dir, encryption=encryption)
        clients.append(client)
        return client

    yield factory
    await close_all(clients)
