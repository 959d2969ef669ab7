"""Figures 2 and 3: end to end with an instant LLM against the echo floor, and the cost.

Floor and bot are measured side by side in the same run, through the same homeserver, by the
same asker, alternately (floor question, bot question, floor question...), so drift in the
machine's load hits both alike. The bot runs as its own process (`python -m bot`): its CPU
time and resident memory come from /proc, with nothing of the measuring clients in them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bench.figures import realistic
from bench.figures.realistic import MODES
from bench.harness import REPO, Bench, ask, question_text, wait_answering
from bench.results import Figure, Row
from bench.stats import summary

GAP_SECONDS = 0.05  # between questions: lets the bot finish its bookkeeping off the clock
TARGET_RATIO = 1.5
TARGET_CPU_MS = 15.0
TARGET_RSS_MB = 80.0
TARGET_STREAMED_CPU_RATIO = 1.3  # streamed ÷ not streamed, same realistic answer (issue 17)
SLOW_LLM_SECONDS = 0.3


async def run(bench: Bench) -> list[Figure]:
    samples = bench.scale.e2e_samples
    settle = bench.scale.settle_seconds
    asker_user = await bench.register("asker")
    asker = await bench.observer(asker_user, encryption=True)
    echo = await bench.echo(encryption=True)
    bots = await realistic.start_pair(bench, "e2e")

    floor_rooms = {
        "clear": (await bench.rooms_with(asker, echo.user_id, 1))[0],
        "encrypted": (await bench.rooms_with(asker, echo.user_id, 1, encrypted=True))[0],
    }
    bot_rooms = {
        mode: {
            "clear": (await bench.rooms_with(asker, bot.user_id, 1))[0],
            "encrypted": (await bench.rooms_with(asker, bot.user_id, 1, encrypted=True))[0],
        }
        for mode, bot in bots.items()
    }
    for kind in ("clear", "encrypted"):
        for mode in MODES:
            await wait_answering(asker, bot_rooms[mode][kind])
        for index in range(bench.scale.warm_up):
            await ask(asker, floor_rooms[kind], question_text(index))
            for mode in MODES:
                await ask(asker, bot_rooms[mode][kind], question_text(index))
    await asyncio.sleep(settle)

    bot = bots["off"]
    idle_before = bot.cpu_seconds()
    await asyncio.sleep(3 * settle)
    idle_cpu_per_s = (bot.cpu_seconds() - idle_before) / (3 * settle)

    results: dict[str, dict[str, Any]] = {}
    for kind in ("clear", "encrypted"):
        floor: list[float] = []
        hops: list[float] = []
        answers: dict[str, list[float]] = {mode: [] for mode in MODES}
        answer_ids: dict[str, list[str]] = {mode: [] for mode in MODES}
        await bench.llm.reset()
        echo_cpu = echo.cpu_seconds()
        # Each bot's CPU over its questions (its own process: nothing else is charged to it).
        cpu = {mode: bots[mode].cpu_seconds() for mode in MODES}
        for index in range(samples):
            event_id, sent = await asker.send(floor_rooms[kind], question_text(index))
            arrival = await asker.reply_to(event_id)
            floor.append(arrival.at - sent)
            received = arrival.content.get("bench.received_at_ns")
            if isinstance(received, int):
                hops.append(received / 1e9 - sent)
            for mode in MODES:
                await asyncio.sleep(GAP_SECONDS)
                event_id, sent = await asker.send(bot_rooms[mode][kind], question_text(index))
                answer = await asker.reply_to(event_id)
                final = await realistic.final_version(asker, answer, 30)
                answers[mode].append((final or answer).at - sent)
                answer_ids[mode].append(answer.event_id)
            await asyncio.sleep(GAP_SECONDS)
        await asyncio.sleep(settle)
        edited = sum(bool(asker.edits.get(event_id)) for event_id in answer_ids["on"])
        cpu = {mode: bots[mode].cpu_seconds() - cpu[mode] for mode in MODES}
        echo_cpu = echo.cpu_seconds() - echo_cpu
        # Both bots asked the same questions: the LLM saw each prompt twice.
        prompts = [int(u) for u in (await bench.llm.stats())["prompt_token_counts"]][::2]
        tail = max(1, samples // 5)
        results[kind] = {
            "floor_s": summary(floor),
            "hop_s": summary(hops),
            "bot_s": summary(answers["off"]),
            "bot_streaming_s": summary(answers["on"]),
            "streaming_edited_answers": edited,
            "bot_cpu_ms_per_answer": cpu["off"] / samples * 1000,
            "bot_streaming_cpu_ms_per_answer": cpu["on"] / samples * 1000,
            "last_answers": tail,
            "prompt_tokens_mean": sum(prompts) / len(prompts) if prompts else 0.0,
            "prompt_tokens_last": sum(prompts[-tail:]) / tail if prompts else 0.0,
            "echo_cpu_ms_per_reply": echo_cpu / samples * 1000,
        }
    results["typing"] = await typing_cost(bench, asker, bot, samples)
    memory: dict[str, Any] = dict(bot.memory())
    memory["streaming_bot"] = bots["on"].memory()
    memory["echo_peer_rss_mb"] = echo.memory()["rss_mb"]
    memory["breakdown_mb"] = await memory_breakdown(bench.bot_python)
    rooms = len(bot_rooms["off"]) + 2  # and the rooms of the typing comparison
    clear = await bench.observer(await bench.register("lecteur"), encryption=False)
    bench.realistic = await realistic.run(bench, clear, bots, bench.scale.streaming_samples)
    for process in bots.values():
        await process.stop()
    bench.floor = {
        "clear_median_s": results["clear"]["floor_s"]["median"],
        "encrypted_median_s": results["encrypted"]["floor_s"]["median"],
        "hop_median_s": results["clear"]["hop_s"]["median"],
    }
    return [
        _e2e_figure(results, samples),
        _cost_figure(results, memory, idle_cpu_per_s, rooms, bench.realistic),
    ]


def _e2e_figure(results: dict[str, dict[str, Any]], samples: int) -> Figure:
    figure = Figure(
        "e2e",
        "2. End to end with an instant LLM",
        "Question sent → complete answer seen by the asker, beside the echo floor "
        "(a zero-work nio peer replying the moment its sync delivers the question); two bot "
        "processes, streaming off and on (the production default), asked alternately.",
    )
    for kind in ("clear", "encrypted"):
        data = results[kind]
        floor = data["floor_s"]["median"]
        bot = data["bot_s"]["median"]
        ratio = bot / floor if floor else float("nan")
        figure.rows += [
            Row(f"floor: echo round trip ({kind}), median", floor * 1000, "ms"),
            Row(f"floor: echo round trip ({kind}), p99", data["floor_s"]["p99"] * 1000, "ms"),
            Row(f"floor: one-way hop ({kind}), median", data["hop_s"]["median"] * 1000, "ms"),
            Row(f"bot: question → answer ({kind}), median", bot * 1000, "ms"),
            Row(f"bot: question → answer ({kind}), p99", data["bot_s"]["p99"] * 1000, "ms"),
            Row(
                f"bot ÷ floor ({kind}), medians",
                ratio,
                "×",
                target=f"≤ {TARGET_RATIO}×",
                passed=ratio <= TARGET_RATIO,
            ),
        ]
    for kind in ("clear", "encrypted"):
        data = results[kind]
        floor = data["floor_s"]["median"]
        streamed = data["bot_streaming_s"]["median"]
        ratio = streamed / floor if floor else float("nan")
        figure.rows += [
            Row(
                f"streaming on: question → complete answer ({kind}), median",
                streamed * 1000,
                "ms",
            ),
            Row(
                f"streaming on: bot ÷ floor ({kind}), medians",
                ratio,
                "×",
                target=f"≤ {TARGET_RATIO}×",
                passed=ratio <= TARGET_RATIO,
            ),
            Row(
                f"streaming on: answers that needed an edit ({kind})",
                float(data["streaming_edited_answers"]),
                f"of {samples}",
            ),
        ]
    figure.data = {"samples_per_kind": samples, **results}
    return figure


def _cost_figure(
    results: dict[str, dict[str, Any]],
    memory: dict[str, Any],
    idle: float,
    rooms: int,
    real: dict[str, Any],
) -> Figure:
    figure = Figure(
        "cost",
        "3. Cost per answer",
        "CPU time (utime+stime from /proc) of the `python -m bot` process per answer, over the "
        "questions of figure 2 (one conversation per room: the prompt grows with it, up to the "
        "context budget), for the bot with streaming off and the one with streaming on; then a "
        f"realistic model ({realistic.FIRST_TOKEN_SECONDS:g} s to the first token, "
        f"{real['answer_tokens']} tokens at {realistic.TOKENS_PER_SECOND:g} tokens/s), "
        f"{real['samples']} answers per bot; resident memory with {rooms} rooms after the run.",
    )
    for kind in ("clear", "encrypted"):
        cpu = results[kind]["bot_cpu_ms_per_answer"]
        figure.rows.append(
            Row(
                f"bot CPU per answer ({kind}), mean",
                cpu,
                "ms",
                target=f"≤ {TARGET_CPU_MS:g} ms",
                passed=cpu <= TARGET_CPU_MS,
            )
        )
    off, on = real["off"]["cpu_ms_per_answer"], real["on"]["cpu_ms_per_answer"]
    ratio = on / off if off else float("nan")
    figure.rows += [
        Row(
            "realistic answer: CPU streamed ÷ not streamed",
            ratio,
            "×",
            target=f"≤ {TARGET_STREAMED_CPU_RATIO:g}×",
            passed=ratio <= TARGET_STREAMED_CPU_RATIO,
        ),
        Row("realistic answer, streaming on: bot CPU per answer", on, "ms"),
        Row("realistic answer, streaming off: bot CPU per answer", off, "ms"),
        Row(
            "realistic answer, streaming on: edits per answer, median",
            real["on"]["edits"]["median"],
            "",
        ),
    ]
    for kind in ("clear", "encrypted"):
        figure.rows.append(
            Row(
                f"instant LLM, streaming on: bot CPU per answer ({kind}), mean",
                results[kind]["bot_streaming_cpu_ms_per_answer"],
                "ms",
            )
        )
    for kind in ("clear", "encrypted"):
        data = results[kind]
        figure.rows += [
            Row(
                f"prompt sent to the LLM ({kind}), mean",
                data["prompt_tokens_mean"],
                "tokens",
            ),
            Row(
                f"prompt sent to the LLM ({kind}), last {data['last_answers']}",
                data["prompt_tokens_last"],
                "tokens",
            ),
        ]
    typing = results["typing"]
    figure.rows += [
        Row(
            "fresh room, instant LLM (no typing notice), per answer", typing["instant_cpu_ms"], "ms"
        ),
        Row(
            f"fresh room, LLM taking {SLOW_LLM_SECONDS * 1000:.0f} ms (typing on and off), "
            "per answer",
            typing["slow_cpu_ms"],
            "ms",
        ),
    ]
    for kind in ("clear", "encrypted"):
        figure.rows.append(
            Row(
                f"reference: echo peer CPU per reply ({kind})",
                results[kind]["echo_cpu_ms_per_reply"],
                "ms",
            )
        )
    figure.rows += [
        Row(
            "bot resident memory (VmRSS)",
            memory["rss_mb"],
            "MB",
            target=f"≤ {TARGET_RSS_MB:g} MB",
            passed=memory["rss_mb"] <= TARGET_RSS_MB,
        ),
        Row("bot peak resident memory (VmHWM)", memory["peak_rss_mb"], "MB"),
        Row(
            "streaming bot resident memory (VmRSS)",
            memory["streaming_bot"]["rss_mb"],
            "MB",
        ),
        Row(
            "streaming bot peak resident memory (VmHWM)",
            memory["streaming_bot"]["peak_rss_mb"],
            "MB",
        ),
        Row("reference: echo peer resident memory (nio only)", memory["echo_peer_rss_mb"], "MB"),
    ]
    figure.rows += [
        Row(f"memory floor: {stage}", value, "MB")
        for stage, value in memory["breakdown_mb"].items()
    ]
    figure.rows += [
        Row("bot idle CPU (sync long-poll)", idle * 1000, "ms/s"),
    ]
    figure.data = {
        kind: {k: v for k, v in results[kind].items() if "cpu" in k or "prompt" in k}
        for kind in ("clear", "encrypted")
    } | {
        "typing": typing,
        "memory": memory,
        "idle_cpu_ms_per_s": idle * 1000,
        "rooms": rooms,
        "realistic": real,
    }
    figure.notes.append(
        "Memory floor: resident memory of a fresh `python` after importing, in order, what the "
        "bot imports (python -m bench.memprobe); each line includes the ones above it."
    )
    return figure


async def ensure_floor(bench: Bench, samples: int = 20) -> float:
    """The clear echo round trip median, measured now if figure 2 did not run."""
    if "clear_median_s" in bench.floor:
        return bench.floor["clear_median_s"]
    asker = await bench.observer(await bench.register("asker"), encryption=False)
    echo = await bench.echo(encryption=False)
    room_id = (await bench.rooms_with(asker, echo.user_id, 1))[0]
    for index in range(bench.scale.warm_up):
        await ask(asker, room_id, question_text(index))
    trips = []
    for index in range(samples):
        trips.append(await ask(asker, room_id, question_text(index)))
        await asyncio.sleep(GAP_SECONDS)
    await echo.stop()
    bench.floor["clear_median_s"] = summary(trips)["median"]
    return bench.floor["clear_median_s"]


async def memory_breakdown(python: str) -> dict[str, float]:
    """RSS of a fresh interpreter after each import stage of the bot (bench.memprobe)."""
    process = await asyncio.create_subprocess_exec(
        python, "-m", "bench.memprobe", cwd=REPO, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    return {str(k): float(v) for k, v in json.loads(out.decode()).items()}


async def typing_cost(bench: Bench, asker: Any, bot: Any, samples: int) -> dict[str, float]:
    """CPU per answer with an instant LLM (no typing notice) and with a slower one (typing on,
    then off): one fresh room each, so both see the same conversation lengths. Whole blocks
    are timed, since /proc counts CPU in 10 ms ticks."""
    count = max(2, samples // 4)
    spent: dict[str, float] = {}
    for kind, delay in (("instant", 0.0), ("slow", SLOW_LLM_SECONDS)):
        room_id = (await bench.rooms_with(asker, bot.user_id, 1))[0]
        await wait_answering(asker, room_id)
        await bench.llm.configure(delay_seconds=delay)
        await asyncio.sleep(bench.scale.settle_seconds)
        before = bot.cpu_seconds()
        for index in range(count):
            await ask(asker, room_id, question_text(index))
            await asyncio.sleep(GAP_SECONDS)
        await asyncio.sleep(bench.scale.settle_seconds)
        spent[kind] = (bot.cpu_seconds() - before) / count
    await bench.llm.configure()
    return {
        "answers_each": count,
        "instant_cpu_ms": spent["instant"] * 1000,
        "slow_cpu_ms": spent["slow"] * 1000,
    }
