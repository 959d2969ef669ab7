"""Token counting with Mistral's own tokenizer (mistral-common, shipped offline in the wheel).

The context sent with a question is trimmed to a budget; counting with the model family's
real tokenizer (Tekken) keeps the budget honest instead of guessing from characters.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, Protocol

# Each chat message costs a few control tokens ([INST], [/INST], role markers) beyond its text.
MESSAGE_OVERHEAD_TOKENS = 4


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...


class MistralTokenCounter:
    """Counts tokens with the Tekken tokenizer; loading takes ~0.6 s, so it is done once, lazily."""

    def __init__(self) -> None:
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

                self._tokenizer = MistralTokenizer.v3(is_tekken=True).instruct_tokenizer.tokenizer
            return self._tokenizer

    async def warm_up(self) -> None:
        """Load the tokenizer off the event loop so the first question does not pay for it."""
        await asyncio.to_thread(self._load)

    def count(self, text: str) -> int:
        tokenizer = self._tokenizer or self._load()
        return len(tokenizer.encode(text, bos=False, eos=False))


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
