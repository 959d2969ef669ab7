"""Figure 9: a command in a large room, its rights check and the whole command.

A public room on the bench's Synapse is filled with real accounts (registered through the
admin API, each joining with its own token), beside a room of 3 members. For each room, the
rights check of a moderator command is timed three ways, with the bot's real gateway code:
- before (the code this replaced): `GET /rooms/{id}/state`, the room's whole state (every
  member event), then the power level computed from it;
- now, cache miss (first check, or right after sync showed a state change): the gateway's
  `PowerLevelCache` fetches `m.room.power_levels` and `m.room.create` only;
- now, cache hit (every other check): no request at all.
Then the whole command (issue 17, target 5: overhead in the large room ≤ 1.2 × in the small
one). The bot runs in-process (as figure 1, to read its raw instrumentation), joined to both
rooms, and the rooms' creator (a member, and a moderator) sends real commands from a syncing
client: a settings change for moderators (`!config temperature …`, a real change each time)
and a plain one (`!aide`, which also asks the rights check: it lists moderator commands to
moderators only). Commands go one at a time, the two rooms alternating, and for each:
- the bot's own overhead: the instrumented stage `command` (tchapbot_overhead_seconds), from
  the router receiving the event (nio parsed the sync) to the first send request of its reply;
- end to end: sent by the creator's client → reply seen by that client (both syncs, the
  homeserver, the bot);
- the floor of the same round trip: afterwards, with the bot stopped, a zero-work echo peer
  (`bench.echo`, its own process) joins both rooms and answers plain messages.
Clear rooms: in an encrypted room a reply would also share its Megolm session with every
member's devices, a cost of its own not measured here.
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

from bench.figures.overhead import InProcessBot, log_to_file, save_profile, start_profiler
from bench.harness import Bench, EchoProcess
from bench.observer import Observer
from bench.results import Figure, Row
from bench.stats import summary
from bot.matrix.gateway import MatrixGateway
from bot.matrix.power import effective_power_level
from bot.ops import metrics
from bot.store import Store
from config.settings import load_settings

TITLE = "9. Commands in a large room"
HIT_REPEATS = 2_000
CONCURRENCY = 8
TARGET_RATIO = 1.2  # issue 17, target 5: large room ÷ small room, command overhead
SETTLE_SECONDS = 0.2  # between commands: the bot's bookkeeping off the clock


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
        TITLE,
        f"A command in a room of 3 and of {big:,} members (real accounts on the bench's "
        "Synapse). Rights check of a moderator command: before (whole room state per check), "
        "now on a cache miss (two state events), now on a cache hit (no request); median of "
        f"{repeats} checks ({HIT_REPEATS} for hits). Whole commands sent by a member (the "
        "in-process bot's instrumented overhead, end to end, and the echo floor); median of "
        f"{repeats} per command and room.",
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
    small_room, big_room = rooms[3], rooms[big]
    await _whole_commands(bench, figure, account, creator, (small_room, big_room), data_dir)
    return [figure]


COMMANDS = {
    "moderator `!config temperature …`": ("!config temperature 0.3", "!config temperature 0.4"),
    "plain `!aide`": ("!aide",),
}


async def _until_answered(observer: Observer, room_id: str, timeout: float = 120) -> None:  # noqa: ASYNC109
    """Until the bot answers a command in `room_id` (its first start ignores what came before
    its first sync)."""
    deadline = time.monotonic() + timeout
    while True:
        event_id, _ = await observer.send(room_id, "!aide")
        try:
            await observer.reply_to(event_id, timeout=3)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


async def _one_command(observer: Observer, room_id: str, body: str) -> tuple[float, float]:
    """One command and its reply: (bot's instrumented overhead, end to end), in seconds."""
    metrics.RAW_OVERHEAD_SAMPLES = []
    try:
        event_id, sent = await observer.send(room_id, body)
        arrival = await observer.reply_to(event_id, timeout=30)
        samples = [s for s in metrics.RAW_OVERHEAD_SAMPLES or [] if s[0] == "command"]
    finally:
        metrics.RAW_OVERHEAD_SAMPLES = None
    if len(samples) != 1:
        raise RuntimeError(f"expected one `command` sample, got {len(samples)}")
    await asyncio.sleep(SETTLE_SECONDS)
    return samples[0][1], arrival.at - sent


async def _whole_commands(
    bench: Bench,
    figure: Figure,
    account: Any,
    creator: Any,
    rooms: tuple[str, str],
    data_dir: Path,
) -> None:
    """Real commands from the rooms' creator to the in-process bot, then the echo floor."""
    repeats = bench.scale.power_repeats
    sizes = {rooms[0]: "small", rooms[1]: "large"}
    log_to_file(bench.work_dir / "bot-power.log")
    settings = load_settings(None, **bench.bot_settings(account, data_dir))
    bot = InProcessBot(settings)
    started = time.perf_counter()
    await bot.start()
    figure.notes.append(
        f"In-process bot ready (first sync, both rooms' full state) in "
        f"{time.perf_counter() - started:.1f} s."
    )
    observer = await bench.observer(creator, encryption=False, quiet=True)
    own: dict[tuple[str, str], list[float]] = {}
    e2e: dict[tuple[str, str], list[float]] = {}
    try:
        for room_id in rooms:
            await _until_answered(observer, room_id)
        for index in range(repeats):
            for label, bodies in COMMANDS.items():
                for room_id in rooms:
                    body = bodies[index % len(bodies)]
                    overhead, round_trip = await _one_command(observer, room_id, body)
                    own.setdefault((label, sizes[room_id]), []).append(overhead)
                    e2e.setdefault((label, sizes[room_id]), []).append(round_trip)
        if bench.profile_dir is not None:
            for room_id in rooms:  # profiled apart, not counted
                profiler = start_profiler()
                for index in range(repeats):
                    for bodies in COMMANDS.values():
                        await _one_command(observer, room_id, bodies[index % len(bodies)])
                save_profile(profiler, bench.profile_dir / f"power-commands-{sizes[room_id]}")
    finally:
        await bot.stop()
    floor = await _echo_floor(bench, observer, rooms, repeats)
    await observer.close()

    members = {"small": "3", "large": f"{bench.scale.power_room_members:,}"}
    stats: dict[str, Any] = {}
    for label in COMMANDS:
        small = summary(own[(label, "small")], 1000)
        large = summary(own[(label, "large")], 1000)
        ratio = large["median"] / small["median"] if small["median"] else float("nan")
        e2e_small = summary(e2e[(label, "small")], 1000)
        e2e_large = summary(e2e[(label, "large")], 1000)
        figure.rows += [
            Row(
                f"{label}, {members['small']} members: bot overhead, median", small["median"], "ms"
            ),
            Row(
                f"{label}, {members['large']} members: bot overhead, median", large["median"], "ms"
            ),
            Row(
                f"{label}: bot overhead, {members['large']} ÷ {members['small']} members",
                ratio,
                "×",
                target=f"≤ {TARGET_RATIO:g}",
                passed=ratio <= TARGET_RATIO,
            ),
            Row(
                f"{label}, {members['small']} members: end to end, median",
                e2e_small["median"],
                "ms",
            ),
            Row(
                f"{label}, {members['large']} members: end to end, median",
                e2e_large["median"],
                "ms",
            ),
            Row(
                f"{label}: end to end, {members['large']} ÷ {members['small']} members",
                e2e_large["median"] / e2e_small["median"],
                "×",
            ),
        ]
        stats[label] = {
            "overhead_ms": {"small": small, "large": large},
            "end_to_end_ms": {"small": e2e_small, "large": e2e_large},
        }
    floor_small = summary(floor["small"], 1000)
    floor_large = summary(floor["large"], 1000)
    figure.rows += [
        Row(f"echo floor, {members['small']} members, median", floor_small["median"], "ms"),
        Row(f"echo floor, {members['large']} members, median", floor_large["median"], "ms"),
    ]
    stats["echo_floor_ms"] = {"small": floor_small, "large": floor_large}
    figure.data["commands"] = stats
    figure.notes.append(
        "Bot overhead: the instrumented stage `command` (router receives the event → first "
        "send request of the reply), read raw. End to end: the creator's client (in the bench's "
        "process) sends → sees the reply. The echo floor is measured after the bot stopped, "
        "the echo peer joined to both rooms (one more member each)."
    )


async def _echo_floor(
    bench: Bench, observer: Observer, rooms: tuple[str, str], repeats: int
) -> dict[str, list[float]]:
    """The zero-work peer's round trip in the same rooms (the bot stopped, so only it replies)."""
    user = await bench.register("echo")
    async with aiohttp.ClientSession() as session:
        for room_id in rooms:
            await _post(
                session,
                f"{bench.synapse.base_url}/_matrix/client/v3/join/{room_id}",
                user.access_token,
                {},
            )
    echo = EchoProcess(bench, user, encryption=False, delay_seconds=0.0)
    await echo.start()
    sizes = {rooms[0]: "small", rooms[1]: "large"}
    rounds: dict[str, list[float]] = {"small": [], "large": []}
    try:
        for room_id in rooms:  # until the echo answers there (its first sync is done)
            for _ in range(40):
                event_id, _sent = await observer.send(room_id, "écho ?")
                try:
                    await observer.reply_to(event_id, timeout=3)
                    break
                except TimeoutError:
                    continue
        for index in range(repeats):
            for room_id in rooms:
                event_id, sent = await observer.send(room_id, f"écho ? ({index})")
                arrival = await observer.reply_to(event_id, timeout=30)
                rounds[sizes[room_id]].append(arrival.at - sent)
                await asyncio.sleep(SETTLE_SECONDS)
    finally:
        await echo.stop()
    return rounds
