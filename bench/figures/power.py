"""Figure 9: the cost of a moderator command's rights check in a large room.

A public room on the bench's Synapse is filled with real accounts (registered through the
admin API, each joining with its own token), beside a room of 3 members. For each room, the
rights check of a moderator command is timed three ways, with the bot's real gateway code:
- before (the code this replaced): `GET /rooms/{id}/state`, the room's whole state (every
  member event), then the power level computed from it;
- now, cache miss (first check, or right after sync showed a state change): the gateway's
  `PowerLevelCache` fetches `m.room.power_levels` and `m.room.create` only;
- now, cache hit (every other check): no request at all.
What is measured is the rights check only, the part of a command's overhead that grows with
the room; the rest of a command's path does not depend on the member count.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import Bench
from bench.results import Figure, Row
from bot.matrix.gateway import MatrixGateway
from bot.matrix.power import effective_power_level
from bot.store import Store
from config.settings import load_settings

HIT_REPEATS = 2_000
CONCURRENCY = 8


async def _post(session: aiohttp.ClientSession, url: str, token: str, body: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    async with session.post(url, json=body, headers=headers) as response:
        data = await response.json(content_type=None)
        if response.status >= 400:
            raise RuntimeError(f"POST {url} failed ({response.status}): {data}")
        return data


async def _room(bench: Bench, creator_token: str, members: int, bot_id: str) -> str:
    """A public room with `members` members in all (creator and bot included)."""
    base = bench.synapse.base_url
    async with aiohttp.ClientSession() as session:
        created = await _post(
            session,
            f"{base}/_matrix/client/v3/createRoom",
            creator_token,
            {"preset": "public_chat", "name": f"Salon de {members}", "invite": [bot_id]},
        )
        room_id = str(created["room_id"])
        gate = asyncio.Semaphore(CONCURRENCY)

        async def member() -> None:
            async with gate:
                user = await bench.register("membre")
                await _post(
                    session, f"{base}/_matrix/client/v3/join/{room_id}", user.access_token, {}
                )

        await asyncio.gather(*(member() for _ in range(members - 2)))
    return room_id


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def run(bench: Bench) -> list[Figure]:
    big, repeats = bench.scale.power_room_members, bench.scale.power_repeats
    figure = Figure(
        "power",
        "9. Rights check in a large room",
        f"Rights check of a moderator command in a room of 3 and of {big:,} members (real "
        "accounts on the bench's Synapse): before (whole room state per check), now on a cache "
        "miss (two state events), now on a cache hit (no request). Median of "
        f"{repeats} checks ({HIT_REPEATS} for hits).",
    )
    creator = await bench.register("moderatrice")
    account = await bench.bot_account()
    started = time.perf_counter()
    rooms = {
        3: await _room(bench, creator.access_token, 3, account.user_id),
        big: await _room(bench, creator.access_token, big, account.user_id),
    }
    figure.notes.append(f"Rooms built in {time.perf_counter() - started:.0f} s.")
    data_dir = Path(tempfile.mkdtemp(prefix="bench-power-", dir=bench.work_dir))
    settings = load_settings(None, **bench.bot_settings(account, data_dir))
    store = await Store.open(settings.database_path)
    gateway = MatrixGateway(settings, store)
    client = gateway.client
    client.restore_login(account.user_id, account.device_id, account.access_token)
    try:
        for room_id in rooms.values():
            await client.join(room_id)
        for members, room_id in rooms.items():
            before: list[float] = []
            size = 0
            for _ in range(repeats):
                t0 = time.perf_counter()
                state = await client.room_get_state(room_id)
                events = [e for e in state.events if isinstance(e, dict)]
                levels = next(e["content"] for e in events if e["type"] == "m.room.power_levels")
                create = next(e for e in events if e["type"] == "m.room.create")
                effective_power_level(creator.user_id, levels, create["sender"], create["content"])
                before.append(time.perf_counter() - t0)
                size = len(json.dumps(events))
            miss: list[float] = []
            for _ in range(repeats):
                gateway.power.invalidate(room_id)
                t0 = time.perf_counter()
                level = await gateway.power.level(room_id, creator.user_id)
                miss.append(time.perf_counter() - t0)
            assert level > 100, "the creator of a v12 room outranks every power level"
            hit: list[float] = []
            for _ in range(HIT_REPEATS):
                t0 = time.perf_counter()
                await gateway.power.level(room_id, creator.user_id)
                hit.append(time.perf_counter() - t0)
            label = f"{members:,} members"
            figure.rows += [
                Row(f"{label}: before, whole state per check", _median_ms(before), "ms"),
                Row(f"{label}: state downloaded per check (before)", size / 1024, "KiB"),
                Row(f"{label}: now, cache miss (2 state events)", _median_ms(miss), "ms"),
                Row(f"{label}: now, cache hit", _median_ms(hit), "ms"),
            ]
    finally:
        await client.close()
        await store.close()
    return [figure]
