"""Where a streamed answer's CPU goes, against the same answer not streamed (figure 3's pair).

Run: `python -m bench.streamprofile [--answers 8] [--py-spy PATH]`. It starts the benchmark's
world (Synapse, the fake model, two `python -m bot` processes on the runtime venv, streaming on
and off), asks 2 realistic questions of each to warm up, then `--answers` more, and prints each
bot's CPU per answer. With `--py-spy` (not a dependency: `pip install py-spy` anywhere), each
bot is sampled at 400 Hz meanwhile and the busy time of its event loop is broken down by the
frame under the loop's callback, so the two bots can be compared line by line. The profiler
slows what it samples: compare the two bots' shares, not their absolute times.
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
from bench.harness import FULL, Bench
from bench.prodenv import production_python

WARM_UP = 2  # the first answers load what later ones reuse (the tokenizer, the SDK's models)
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


async def profile(answers: int, py_spy: str | None, out_dir: Path) -> None:
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
        result = await realistic.run(bench, asker, bots, answers)
        for sampler, _ in samplers.values():
            sampler.send_signal(signal.SIGINT)
            await sampler.wait()
        for mode in realistic.MODES:
            cpu = result[mode]["cpu_ms_per_answer"]
            print(f"streaming {mode}: {cpu:.1f} ms of CPU per answer ({answers} answers)")
        for mode, (_, out) in samplers.items():
            busy, keys = loop_breakdown(out)
            print(f"\nstreaming {mode}: {busy} busy samples of the main thread ({out})")
            for key, count in keys.most_common(15):
                print(f"  {count:6d} {100 * count / max(1, busy):5.1f} %  {key}")
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
    args = parser.parse_args(argv)
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="tchap-streamprofile-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(profile(args.answers, args.py_spy, out_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
