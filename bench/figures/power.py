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
import itertools
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.figures.overhead import InProcessBot, log_to_file, save_profile, start_profiler
from bench.harness import Bench, EchoProcess, wait_answering
from bench.observer import Observer
from bench.procstat import cpu_seconds
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
        f"{bench.scale.power_commands} per command and room.",
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


VARIANTS = {  # the rooms as built, then the same rooms without their name
    "named": "named room",
    "unnamed": "room without name (named after its members)",
}
COMMANDS = {
    "moderator `!config temperature …`": ("!config temperature 0.3", "!config temperature 0.4"),
    "plain `!aide`": ("!aide",),
}


async def _unname(bench: Bench, token: str, rooms: tuple[str, str]) -> None:
    """Remove the rooms' names: clients (nio too) then name them after their members."""
    base = bench.synapse.base_url
    async with aiohttp.ClientSession() as session:
        for room_id in rooms:
            url = f"{base}/_matrix/client/v3/rooms/{room_id}/state/m.room.name/"
            headers = {"Authorization": f"Bearer {token}"}
            async with session.put(url, json={"name": ""}, headers=headers) as response:
                if response.status >= 400:
                    raise RuntimeError(f"PUT {url} failed ({response.status})")


def _cpu(pid: int | None) -> float:
    return cpu_seconds(pid) if pid is not None else math.nan


async def _one_command(
    observer: Observer, room_id: str, body: str, synapse_pid: int | None
) -> dict[str, float]:
    """One command and its reply, in seconds: the bot's instrumented overhead, end to end and
    its parts on the one clock of this process (bot and sender both live here), and the CPU
    time Synapse and this process spent meanwhile."""
    metrics.RAW_OVERHEAD_SAMPLES = []
    synapse_cpu, own_cpu = _cpu(synapse_pid), time.process_time()
    try:
        event_id, sent = await observer.send(room_id, body)
        accepted = time.perf_counter()
        arrival = await observer.reply_to(event_id, timeout=30)
        samples = [s for s in metrics.RAW_OVERHEAD_SAMPLES or [] if s[0] == "command"]
    finally:
        metrics.RAW_OVERHEAD_SAMPLES = None
    if len(samples) != 1:
        raise RuntimeError(f"expected one `command` sample, got {len(samples)}")
    _, overhead, _, requested = samples[0]
    received = requested - overhead
    result = {
        "overhead": overhead,
        "end_to_end": arrival.at - sent,
        "accepted": accepted - sent,  # the homeserver took the command (PUT /send returned)
        "to_bot": received - sent,  # … and the bot's sync delivered it to the router
        "reply_seen": arrival.at - requested,  # reply send requested → seen by the sender
        "synapse_cpu": _cpu(synapse_pid) - synapse_cpu,
        "own_cpu": time.process_time() - own_cpu,
    }
    await asyncio.sleep(SETTLE_SECONDS)
    return result


PARTS = {
    "accepted": "command sent → accepted by the homeserver (PUT /send returned)",
    "to_bot": "command sent → in the bot's router (homeserver, the bot's sync, nio)",
    "overhead": "bot overhead (router → reply send requested)",
    "reply_seen": "reply send requested → seen by the sender (homeserver, sender's sync)",
    "synapse_cpu": "Synapse CPU per command",
    "own_cpu": "bench process CPU per command (in-process bot and the sender's client)",
}


async def _whole_commands(
    bench: Bench,
    figure: Figure,
    account: Any,
    creator: Any,
    rooms: tuple[str, str],
    data_dir: Path,
) -> None:
    """Real commands from the rooms' creator to the in-process bot, then the echo floor."""
    repeats = bench.scale.power_commands
    sizes = {rooms[0]: "small", rooms[1]: "large"}
    process = getattr(bench.synapse, "_process", None)
    synapse_pid = process.pid if process is not None else None
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
    runs: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    try:
        for variant in VARIANTS:
            if variant == "unnamed":
                await _unname(bench, creator.access_token, rooms)
            for room_id in rooms:  # also: the bot's sync brought the rooms' new state
                await wait_answering(observer, room_id, timeout=120, text="!aide")
            for index in range(repeats):
                for label, bodies in COMMANDS.items():
                    for room_id in rooms:
                        body = bodies[index % len(bodies)]
                        run = await _one_command(observer, room_id, body, synapse_pid)
                        runs.setdefault((variant, label, sizes[room_id]), []).append(run)
            if bench.profile_dir is not None:
                for room_id in rooms:  # profiled apart, not counted
                    profiler = start_profiler()
                    for index in range(min(repeats, 15)):
                        for bodies in COMMANDS.values():
                            body = bodies[index % len(bodies)]
                            await _one_command(observer, room_id, body, synapse_pid)
                    stem = f"power-commands-{variant}-{sizes[room_id]}"
                    save_profile(profiler, bench.profile_dir / stem)
    finally:
        await bot.stop()
    floor = await _echo_floor(bench, observer, rooms, repeats, synapse_pid)
    await observer.close()

    members = {"small": "3", "large": f"{bench.scale.power_room_members:,}"}
    small_n, large_n = members["small"], members["large"]
    stats: dict[str, Any] = {}
    for variant, label in itertools.product(VARIANTS, COMMANDS):
        per_room = {
            size: {
                key: summary([run[key] for run in runs[(variant, label, size)]], 1000)
                for key in (*PARTS, "end_to_end")
            }
            for size in ("small", "large")
        }
        small, large = per_room["small"], per_room["large"]
        ratio = large["overhead"]["median"] / small["overhead"]["median"]
        name = f"{label}, {VARIANTS[variant]}"
        figure.rows += [
            Row(
                f"{name}, {small_n} members: bot overhead, median",
                small["overhead"]["median"],
                "ms",
            ),
            Row(
                f"{name}, {large_n} members: bot overhead, median",
                large["overhead"]["median"],
                "ms",
            ),
            Row(
                f"{name}: bot overhead, {large_n} ÷ {small_n} members",
                ratio,
                "×",
                target=f"≤ {TARGET_RATIO:g}",
                passed=ratio <= TARGET_RATIO,
            ),
            Row(
                f"{name}, {small_n} members: end to end, median",
                small["end_to_end"]["median"],
                "ms",
            ),
            Row(
                f"{name}, {large_n} members: end to end, median",
                large["end_to_end"]["median"],
                "ms",
            ),
            Row(
                f"{name}: end to end, {large_n} ÷ {small_n} members",
                large["end_to_end"]["median"] / small["end_to_end"]["median"],
                "×",
            ),
        ]
        stats[f"{variant} {label}"] = per_room
    for variant, text in VARIANTS.items():
        cpu = {
            size: statistics.mean(
                run["own_cpu"]
                for key, values in runs.items()
                if key[::2] == (variant, size)
                for run in values
            )
            for size in ("small", "large")
        }
        figure.rows.append(
            Row(
                f"{text}: bench process CPU per command (bot and sender), "
                f"{large_n} ÷ {small_n} members",
                cpu["large"] / cpu["small"],
                "×",
            )
        )
    for size in ("small", "large"):
        pooled = [
            run for key, values in runs.items() if key[::2] == ("named", size) for run in values
        ]
        for key, text in PARTS.items():
            if key == "overhead":
                continue
            values = [run[key] for run in pooled]
            cpu = key.endswith("_cpu")
            value = (sum(values) / len(values) if cpu else summary(values)["median"]) * 1000
            figure.rows.append(
                Row(
                    f"both commands, named room of {members[size]}: {text}, {'mean' if cpu else 'median'}",
                    value,
                    "ms",
                )
            )
    for size in ("small", "large"):
        trips = floor[size]
        end_to_end = summary([trip["end_to_end"] for trip in trips], 1000)
        synapse = sum(trip["synapse_cpu"] for trip in trips) / len(trips) * 1000
        figure.rows += [
            Row(
                f"echo floor, {members[size]} members: round trip, median",
                end_to_end["median"],
                "ms",
            ),
            Row(
                f"echo floor, {members[size]} members: Synapse CPU per round trip, mean",
                synapse,
                "ms",
            ),
        ]
        stats[f"echo_floor_{size}_ms"] = end_to_end
    figure.data["commands"] = stats
    figure.notes.append(
        "Bot overhead: the instrumented stage `command` (router receives the event → first "
        "send request of the reply), read raw. End to end: the creator's client (in the bench's "
        "process, like the bot, so one clock times every part) sends → sees the reply. The "
        "bot's replies are notices; the echo replies with m.text. The echo floor is measured "
        "after the bot stopped, the echo peer joined to both rooms (one more member each)."
    )


async def _echo_floor(
    bench: Bench, observer: Observer, rooms: tuple[str, str], repeats: int, synapse_pid: int | None
) -> dict[str, list[dict[str, float]]]:
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
    rounds: dict[str, list[dict[str, float]]] = {"small": [], "large": []}
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
                synapse_cpu = _cpu(synapse_pid)
                event_id, sent = await observer.send(room_id, f"écho ? ({index})")
                arrival = await observer.reply_to(event_id, timeout=30)
                rounds[sizes[room_id]].append(
                    {
                        "end_to_end": arrival.at - sent,
                        "synapse_cpu": _cpu(synapse_pid) - synapse_cpu,
                    }
                )
                await asyncio.sleep(SETTLE_SECONDS)
    finally:
        await echo.stop()
    return rounds
