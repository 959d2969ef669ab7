"""Token counting with Mistral's own tokenizer (mistral-common, shipped offline in the wheel).

The context sent with a question is trimmed to a budget; counting with the model family's
real tokenizer (Tekken) keeps the budget honest instead of guessing from characters.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import gc
import hashlib
import json
import re
import threading
import time
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
    async def warm_up(self) -> None:
        """Make `count` ready without blocking the event loop (called before counting)."""

    def count(self, text: str) -> int: ...


def _load_tekken() -> Any:
    """Tekken's BPE as a bare tiktoken encoding, loaded once per process.

    mistral-common's Tekkenizer also keeps decoding tables and leaves the parsed JSON's
    fragments in the heap: ~130 MB resident where counting needs ~40 MB (bench/, figure 3).
    The count is the same: Tekkenizer.encode is this encoding's encode, ids shifted.
    The vocabulary file (15 MB of JSON, one field per line) is read line by line rather than
    parsed whole: `json.loads` built 130,000 dicts at once and set the process's peak memory.
    """
    global _encoding
    with _encoding_lock:
        if _encoding is None:
            import tiktoken

            config, ranks = _read_vocabulary()
            encoding = tiktoken.Encoding(
                name="tekken", pat_str=config["pattern"], mergeable_ranks=ranks, special_tokens={}
            )
            # Kept by tiktoken only to pickle the encoding; its Rust core has its own copy.
            encoding._mergeable_ranks = {}
            del ranks
            gc.collect()
            _encoding = encoding
        return _encoding


_TOKEN_BYTES_LINE = re.compile(rb'\s*"token_bytes":\s*"([^"]*)"')
# Lines read between two explicit hand-overs of the GIL (~1 ms of work).
_LINES_PER_YIELD = 2_000


def _read_vocabulary() -> tuple[dict[str, Any], dict[bytes, int]]:
    """The file's `config` and the ranks of its ordinary (non-special) tokens, in file order.

    It runs in a worker thread, yet this loop kept the GIL from the event loop for up to
    ~200 ms at a time (Python 3.11 did not switch on its own here): every room's questions
    waited. A `time.sleep(0)` every few thousand lines hands the GIL over explicitly
    (`python -m bench.tokenizerprobe`)."""
    header = bytearray()
    ranks: dict[bytes, int] = {}
    with (resources.files("mistral_common") / "data" / TEKKEN_FILE).open("rb") as file:
        for line in file:
            if line.lstrip().startswith(b'"vocab"'):
                break
            header += line
        config: dict[str, Any] = json.loads(bytes(header).rstrip().rstrip(b",") + b"}")["config"]
        inner = config["default_vocab_size"] - config["default_num_special_tokens"]
        for number, line in enumerate(file):
            if number % _LINES_PER_YIELD == 0:
                time.sleep(0)
            match = _TOKEN_BYTES_LINE.match(line)
            if match is not None:
                ranks[base64.b64decode(match[1])] = len(ranks)
                if len(ranks) == inner:
                    break
    if len(ranks) != inner:
        raise RuntimeError(f"unexpected layout of {TEKKEN_FILE}")
    return config, ranks


def tokenizer_loaded() -> bool:
    return _encoding is not None


_counts: collections.OrderedDict[bytes, int] = collections.OrderedDict()
_counts_lock = threading.Lock()


def _text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _count(text: str) -> int:
    """Cached: every question re-reads the room's recent turns, whose counts never change.

    Keyed by a 16-byte digest, not by the text: the cache never keeps people's messages in
    memory (after a reset or the room's retention), and 16,384 entries weigh ~2 MB instead
    of the texts themselves (~25 MB of answers)."""
    key = _text_key(text)
    with _counts_lock:
        cached = _counts.get(key)
        if cached is not None:
            _counts.move_to_end(key)
            return cached
    tokens = len((_encoding or _load_tekken()).encode_ordinary(text))
    with _counts_lock:
        _counts[key] = tokens
        if len(_counts) > COUNT_CACHE_SIZE:
            _counts.popitem(last=False)
    return tokens


class MistralTokenCounter:
    """Counts tokens with the Tekken tokenizer. Loading takes ~0.5 s and ~40 MB, so it is done
    only when a count is needed (many contexts are smaller in bytes than the budget: see
    `fit_to_budget`), once, off the event loop, and shared by every counter of the process."""

    async def warm_up(self) -> None:
        """Load the tokenizer off the event loop (at once when it is already loaded)."""
        if _encoding is None:
            await asyncio.to_thread(_load_tekken)

    def count(self, text: str) -> int:
        return _count(text)


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def fits_by_bytes(texts: Sequence[str], budget: int) -> bool:
    """True when `texts` fit in `budget` tokens without counting: a Tekken token is at least
    one UTF-8 byte (byte-level BPE), so a text has no more tokens than bytes."""
    used = 0
    for text in texts:
        used += utf8_size(text) + MESSAGE_OVERHEAD_TOKENS
        if used > budget:
            return False
    return True


def fit_to_budget(
    counter: TokenCounter, fixed: Sequence[str], history_newest_first: Sequence[str], budget: int
) -> int:
    """How many of the newest history items fit once the fixed parts are paid for."""
    if fits_by_bytes([*fixed, *history_newest_first], budget):
        return len(history_newest_first)
    used = sum(counter.count(text) + MESSAGE_OVERHEAD_TOKENS for text in fixed)
    kept = 0
    for text in history_newest_first:
        used += counter.count(text) + MESSAGE_OVERHEAD_TOKENS
        if used > budget:
            break
        kept += 1
    return kept
