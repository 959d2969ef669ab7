"""A real Synapse homeserver on 127.0.0.1, run as a child process.

Used by `tchap-bot sandbox` and by the integration tests (tests/support/synapse.py re-exports
it). Why a real server: the bot's hard parts (sync tokens, invites, E2E encryption, room
versions, rate limits, outages) only show up against the real thing. Synapse from PyPI
(the `sandbox` extra) starts in ~2 s on SQLite and listens on 127.0.0.1 only; nothing leaves
the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import hmac
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

SERVER_NAME = "localhost"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

# Every rate limiter this Synapse version knows, raised far beyond what a test does:
# tests register, log in, create rooms and send messages in bursts and must never see 429.
_UNLIMITED = {"per_second": 10_000, "burst_count": 100_000}
_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {
        "address": _UNLIMITED,
        "account": _UNLIMITED,
        "failed_attempts": _UNLIMITED,
    },
    "rc_admin_redaction": _UNLIMITED,
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_invites": {
        "per_room": _UNLIMITED,
        "per_user": _UNLIMITED,
        "per_issuer": _UNLIMITED,
    },
    "rc_third_party_invite": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
    "rc_profile": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
}

_LOG_CONFIG = """\
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: {log_file}
    encoding: utf8
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
"""


@dataclass
class RegisteredUser:
    """A user created on the test homeserver, with a ready access token and device."""

    user_id: str
    password: str
    access_token: str
    device_id: str

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]


class SynapseMissing(RuntimeError):
    """matrix-synapse is not installed in this interpreter."""


def synapse_installed() -> bool:
    return importlib.util.find_spec("synapse") is not None


def find_synapse_python() -> str:
    """Return the interpreter that can run Synapse.

    Integration tests must FAIL, never skip, when Synapse is missing: a silently skipped
    suite would let a broken bot pass CI.
    """
    if not synapse_installed():
        raise SynapseMissing(
            "matrix-synapse is not importable from this interpreter "
            f"({sys.executable}); install it with the sandbox or test extra: "
            "pip install -e '.[sandbox]' (or '.[test]')"
        )
    return sys.executable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """Ask Linux to SIGTERM the child if its parent dies (pytest killed by a CI timeout, the
    sandbox killed with SIGKILL): a homeserver or model server must never outlive its owner.

    Note: PR_SET_PDEATHSIG fires when the *thread* that forked exits, so the server must
    be spawned from a long-lived thread (the main thread or the event loop's thread).
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal a child started with ``start_new_session=True`` and everything it forked."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, wait, then SIGKILL: never leave an orphan process behind."""
    if proc.poll() is None:
        signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(proc, signal.SIGKILL)
            proc.wait(timeout)


class SynapseServer:
    """One Synapse process with its own temp dir, SQLite database and free port.

    ``start``/``stop``/``restart`` block (for fixtures); ``start_async``/``stop_async``/
    ``restart_async`` do the same without blocking the event loop, which outage tests need
    when the bot runs in the same loop. The port and database survive a restart.
    """

    def __init__(
        self, workdir: Path | None = None, keep_workdir: bool = False, port: int | None = None
    ) -> None:
        self.server_name = SERVER_NAME
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="tchap-synapse-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keep_workdir = keep_workdir
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.registration_shared_secret = secrets.token_hex(16)
        self.config_path = self.workdir / "homeserver.yaml"
        self.log_path = self.workdir / "homeserver.log"
        self.stdout_path = self.workdir / "stdout.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._stdout_file: Any = None
        self._configured = False

    # -- configuration -------------------------------------------------------------

    def _write_config(self) -> None:
        """Write the homeserver config (JSON is valid YAML) and a signing key once."""
        from signedjson.key import generate_signing_key, write_signing_keys

        signing_key_path = self.workdir / "signing.key"
        if not signing_key_path.exists():
            with signing_key_path.open("w") as fh:
                write_signing_keys(fh, [generate_signing_key("a_test")])
        log_config_path = self.workdir / "log.config"
        log_config_path.write_text(_LOG_CONFIG.format(log_file=json.dumps(str(self.log_path))))
        (self.workdir / "media_store").mkdir(exist_ok=True)
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "public_baseurl": self.base_url + "/",
            "pid_file": str(self.workdir / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    # The admin API (/_synapse/admin) is served by the client resource.
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {
                "name": "sqlite3",
                "args": {"database": str(self.workdir / "homeserver.db")},
            },
            "log_config": str(log_config_path),
            "media_store_path": str(self.workdir / "media_store"),
            "signing_key_path": str(signing_key_path),
            "registration_shared_secret": self.registration_shared_secret,
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            "enable_registration": False,
            "report_stats": False,
            "enable_metrics": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "bcrypt_rounds": 4,
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            **_RATE_LIMITS,
        }
        self.config_path.write_text(json.dumps(config, indent=2))
        self._configured = True

    # -- process control -----------------------------------------------------------

    def _spawn(self) -> None:
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("Synapse is already running")
        if not self._configured:
            self._write_config()
        python = find_synapse_python()
        self._stdout_file = self.stdout_path.open("ab")
        self._process = subprocess.Popen(
            [python, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in pytest must not race our own shutdown
            preexec_fn=die_with_parent,
        )

    def _check_alive(self) -> None:
        if self._process is None:
            raise RuntimeError("Synapse was not started")
        code = self._process.poll()
        if code is not None:
            raise RuntimeError(f"Synapse exited with code {code}:\n{self.log_tail()}")

    def _ready_sync(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/_matrix/client/versions", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    async def _ready_async(self) -> bool:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
                session.get(f"{self.base_url}/_matrix/client/versions") as resp,
            ):
                return resp.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start Synapse and block until ``/_matrix/client/versions`` answers."""
        self._spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self._ready_sync():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Synapse did not answer within {timeout} s:\n{self.log_tail()}")

    async def start_async(self, timeout: float = START_TIMEOUT) -> None:  # noqa: ASYNC109
        """Like :meth:`start`, but lets the event loop run while Synapse boots."""

        self._spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if await self._ready_async():
                return
            await asyncio.sleep(0.05)
        await self.stop_async()
        raise RuntimeError(f"Synapse did not answer within {timeout} s:\n{self.log_tail()}")

    def _signal(self, sig: int) -> None:
        assert self._process is not None
        signal_group(self._process, sig)

    def _reap(self) -> None:
        if self._stdout_file is not None:
            self._stdout_file.close()
            self._stdout_file = None
        self._process = None

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL: never leave an orphan process behind."""
        proc = self._process
        if proc is None:
            return
        stop_process_group(proc)
        self._reap()

    async def stop_async(self) -> None:
        """Like :meth:`stop`, without blocking the event loop."""

        proc = self._process
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                await asyncio.to_thread(proc.wait, STOP_TIMEOUT)
        self._reap()

    def restart(self) -> None:
        """Stop and start again on the same port with the same database (outage tests)."""
        self.stop()
        self.start()

    async def restart_async(self) -> None:
        await self.stop_async()
        await self.start_async()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def close(self) -> None:
        """Stop the server and delete its temp dir (unless asked to keep it)."""
        self.stop()
        if self._owns_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of Synapse's stdout/stderr and log file, for error messages."""
        parts = []
        for path in (self.stdout_path, self.log_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts) or "(no log output)"

    def __enter__(self) -> SynapseServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- admin API -----------------------------------------------------------------

    async def register(
        self,
        localpart: str,
        password: str = "secret-pass",
        admin: bool = False,
        displayname: str | None = None,
    ) -> RegisteredUser:
        """Create a user through the shared-secret admin API (no login, no extra device).

        GET a nonce, then POST with an HMAC-SHA1 over ``nonce\\0user\\0password\\0admin``.
        """
        url = f"{self.base_url}/_synapse/admin/v1/register"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                resp.raise_for_status()
                nonce = (await resp.json())["nonce"]
            mac = hmac.new(self.registration_shared_secret.encode(), digestmod=hashlib.sha1)
            mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode()]))
            mac.update(b"\x00" + (b"admin" if admin else b"notadmin"))
            body: dict[str, Any] = {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            }
            if displayname is not None:
                body["displayname"] = displayname
            async with session.post(url, json=body) as resp:
                data = await resp.json()
                if resp.status != 200:
                    raise RuntimeError(f"registering {localpart!r} failed ({resp.status}): {data}")
        return RegisteredUser(
            user_id=data["user_id"],
            password=password,
            access_token=data["access_token"],
            device_id=data["device_id"],
        )

    async def admin_request(
        self,
        method: str,
        path: str,
        access_token: str,
        json_body: dict[str, Any] | None = None,
        check: Callable[[int], bool] = lambda status: status < 400,
    ) -> dict[str, Any]:
        """Call any client/admin endpoint with a token (e.g. to deactivate a user)."""
        headers = {"Authorization": f"Bearer {access_token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.base_url + path, json=json_body, headers=headers) as resp,
        ):
            data: dict[str, Any] = await resp.json(content_type=None) or {}
            if not check(resp.status):
                raise RuntimeError(f"{method} {path} failed ({resp.status}): {data}")
            return data
