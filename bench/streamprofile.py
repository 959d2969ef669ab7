"""Where a streamed answer's CPU goes, against the same answer not streamed (figure 3's pair).

Run: `python -m bench.streamprofile [--answers 8] [--py-spy PATH]`. It starts the benchmark's
world (Synapse, the fake model, two `python -m bot` processes on the runtime venv, streaming on
and off), asks 2 realistic questions of each to warm up, then `--answers` more, and prints each
bot's CPU per answer. With `--py-spy` (not a dependency: `pip install py-spy` anywhere), each
bot is sampled at 400 Hz meanwhile and the busy time of its event loop is broken down by the
frame under the loop's callback, so the two bots can be compared line by line. The profiler
slows what it samples: compare the two bots' shares, not their absolute times.

`--edit-interval SECONDS` (repeatable) adds a streaming bot editing at that interval instead
of the production default, measured against the same bot not streaming: what the edits cost,
apart from streaming itself (a long interval leaves the first message and the final edit).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import signal
import tempfile
from pathlib import Path

from bench.figures import realistic
from bench.harness import FULL, Bench, BotProcess
from bench.observer import Observer
from bench.prodenv import production_python

WARM_UP = 2  # the first answers load what later ones reuse (the SDK's models, caches)
# Answers per room, as in figure 3: a room's context then stays under its budget in bytes, so
# no count loads the tokenizer (+0.5 s of CPU, once per process) in the middle of a measure.
ANSWERS_PER_ROOM = 4


async def measure(
    bench: Bench, asker: Observer, bots: dict[str, BotProcess], answers: int
) -> dict[str, tuple[float, list[float]]]:
    """Per mode: CPU per answer (ms) and each room's median count of edits, over `answers`
    answers asked in rooms of at most ANSWERS_PER_ROOM."""
    cpu: dict[str, float] = {mode: 0.0 for mode in bots}
    edits: dict[str, list[float]] = {mode: [] for mode in bots}
    done = 0
    while done < answers:
        count = min(ANSWERS_PER_ROOM, answers - done)
        result = await realistic.run(bench, asker, bots, count)
        for mode in bots:
            cpu[mode] += result[mode]["cpu_ms_per_answer"] * count
            edits[mode].append(result[mode]["edits"]["median"])
        done += count
    return {mode: (cpu[mode] / max(1, answers), edits[mode]) for mode in bots}


_LINE = re.compile(r":\d+\)")


def loop_breakdown(raw_profile: Path, depth: int = 2) -> tuple[int, collections.Counter[str]]:
    """Busy samples of the main thread, keyed by the frames under asyncio's `Handle._run`."""
    busy = 0
    keys: collections.Counter[str] = collections.Counter()
    for line in raw_profile.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        if not frames[0].startswith("_run_module_as_main") or "select" in frames[-1]:
            continue  # another thread, or the loop waiting
        busy += int(count)
        try:
            start = frames.index("Handle._run (asyncio/events.py)") + 1
        except ValueError:
            keys["(the event loop itself)"] += int(count)
            continue
        keys[" > ".join(frames[start : start + depth])] += int(count)
    return busy, keys


async def profile(
    answers: int, py_spy: str | None, out_dir: Path, edit_intervals: list[float]
) -> None:
    bench = Bench(FULL, None, None)
    bench.bot_python = production_python()
    await bench.start()
    try:
        asker = await bench.observer(await bench.register("lectrice"), encryption=False)
        bots = await realistic.start_pair(bench, "profile")
        await realistic.run(bench, asker, bots, WARM_UP)
        samplers = {}
        if py_spy:
            for mode, bot in bots.items():
                out = out_dir / f"streaming-{mode}.txt"
                command = [py_spy, "record", "--pid", str(bot.pid), "--format", "raw"]
                command += ["--rate", "400", "--idle", "--output", str(out)]
                sampler = await asyncio.create_subprocess_exec(
                    *command, stdout=asyncio.subprocess.DEVNULL
                )
                samplers[mode] = (sampler, out)
        result = await measure(bench, asker, bots, answers)
        for sampler, _ in samplers.values():
            sampler.send_signal(signal.SIGINT)
            await sampler.wait()
        for mode in realistic.MODES:
            cpu, _edits = result[mode]
            print(f"streaming {mode}: {cpu:.1f} ms of CPU per answer ({answers} answers)")
        for mode, (_, out) in samplers.items():
            busy, keys = loop_breakdown(out)
            print(f"\nstreaming {mode}: {busy} busy samples of the main thread ({out})")
            for key, count in keys.most_common(15):
                print(f"  {count:6d} {100 * count / max(1, busy):5.1f} %  {key}")
        for interval in edit_intervals:
            other = bench.bot_process(await bench.bot_account(), f"bot-edits-{interval:g}s")
            await other.start(streaming=True, stream_edit_interval_seconds=interval)
            pair = {"on": other, "off": bots["off"]}
            await realistic.run(bench, asker, pair, WARM_UP)
            measured = await measure(bench, asker, pair, answers)
            (on_cpu, on_edits), (off_cpu, _) = measured["on"], measured["off"]
            print(
                f"streaming on, an edit at most every {interval:g} s: {on_cpu:.1f} ms of CPU "
                f"per answer, edits {'/'.join(f'{e:g}' for e in on_edits)} (each room's "
                f"median); streaming off in the same run: {off_cpu:.1f} ms"
            )
            await other.stop()
        for bot in bots.values():
            await bot.stop()
    finally:
        await bench.close()
        bench.cleanup_work_dir()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streamprofile", description=__doc__)
    parser.add_argument("--answers", type=int, default=8, help="answers per bot after warm-up")
    parser.add_argument("--py-spy", help="path of a py-spy executable: sample both bots")
    parser.add_argument("--out", type=Path, help="where py-spy's raw profiles go")
    parser.add_argument(
        "--edit-interval",
        type=float,
        action="append",
        default=[],
        metavar="SECONDS",
        help="also measure a streaming bot editing at this interval (repeatable)",
    )
    args = parser.parse_args(argv)
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="tchap-streamprofile-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(profile(args.answers, args.py_spy, out_dir, args.edit_interval))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
