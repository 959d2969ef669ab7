"""Token counting with Mistral's own tokenizer (mistral-common, shipped offline in the wheel).

The context sent with a question is trimmed to a budget; counting with the model family's
real tokenizer (Tekken) keeps the budget honest instead of guessing from characters.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gc
import json
import threading
from collections.abc import Sequence
from importlib import resources
from typing import Any, Protocol

# Each chat message costs a few control tokens ([INST], [/INST], role markers) beyond its text.
MESSAGE_OVERHEAD_TOKENS = 4
# The vocabulary `MistralTokenizer.v3(is_tekken=True)` loads, shipped in mistral-common's wheel.
TEKKEN_FILE = "tekken_240718.json"
COUNT_CACHE_SIZE = 16_384

_encoding: Any = None
_encoding_lock = threading.Lock()


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...


def _load_tekken() -> Any:
    """Tekken's BPE as a bare tiktoken encoding, loaded once per process.

    mistral-common's Tekkenizer also keeps decoding tables and leaves the parsed JSON's
    fragments in the heap: ~130 MB resident where counting needs ~40 MB (bench/, figure 3).
    The count is the same: Tekkenizer.encode is this encoding's encode, ids shifted.
    """
    global _encoding
    with _encoding_lock:
        if _encoding is None:
            import tiktoken

            raw = (resources.files("mistral_common") / "data" / TEKKEN_FILE).read_bytes()
            data = json.loads(raw)
            del raw
            config = data["config"]
            inner = config["default_vocab_size"] - config["default_num_special_tokens"]
            ranks = {
                base64.b64decode(token["token_bytes"]): token["rank"]
                for token in data["vocab"][:inner]
            }
            del data
            encoding = tiktoken.Encoding(
                name="tekken", pat_str=config["pattern"], mergeable_ranks=ranks, special_tokens={}
            )
            # Kept by tiktoken only to pickle the encoding; its Rust core has its own copy.
            encoding._mergeable_ranks = {}
            del ranks
            gc.collect()
            _encoding = encoding
        return _encoding


@functools.lru_cache(maxsize=COUNT_CACHE_SIZE)
def _count(text: str) -> int:
    """Cached: every question re-reads the room's recent turns, whose counts never change."""
    return len((_encoding or _load_tekken()).encode_ordinary(text))


class MistralTokenCounter:
    """Counts tokens with the Tekken tokenizer; loading takes ~0.5 s, so it is done once, lazily,
    and shared by every counter of the process."""

    async def warm_up(self) -> None:
        """Load the tokenizer off the event loop so the first question does not pay for it."""
        await asyncio.to_thread(_load_tekken)

    def count(self, text: str) -> int:
        return _count(text)


def fit_to_budget(
    counter: TokenCounter, fixed: Sequence[str], history_newest_first: Sequence[str], budget: int
) -> int:
    """How many of the newest history items fit once the fixed parts are paid for."""
    used = sum(counter.count(text) + MESSAGE_OVERHEAD_TOKENS for text in fixed)
    kept = 0
    for text in history_newest_first:
        used += counter.count(text) + MESSAGE_OVERHEAD_TOKENS
        if used > budget:
            break
        kept += 1
    return kept
