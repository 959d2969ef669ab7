"""Where the bot's resident memory goes: RSS after each import stage, in a fresh process.

Run: `python -m bench.memprobe` prints one JSON object {stage: MB}. Stages are cumulative
(each includes the previous), in the order the bot loads them.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path


def rss_mb() -> float:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    stages = {"python": rss_mb()}
    import nio  # noqa: F401

    stages["+ matrix-nio (with vodozemac)"] = rss_mb()
    from mistralai.client import Mistral  # noqa: F401

    stages["+ mistralai SDK"] = rss_mb()
    import bot.app  # noqa: F401

    stages["+ the bot's own modules (aiosqlite, structlog, pydantic settings, markdown)"] = rss_mb()
    from bot.answer.tokens import MistralTokenCounter

    MistralTokenCounter().count("Bonjour")
    gc.collect()
    stages["+ Tekken tokenizer loaded"] = rss_mb()
    print(json.dumps(stages))


if __name__ == "__main__":
    main()
