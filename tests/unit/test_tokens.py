"""Token budget: exact Tekken counts, and no counting when the bytes already fit."""

from __future__ import annotations

import collections
import gc
import random

import pytest

from bot.answer import tokens
from bot.answer.tokens import MESSAGE_OVERHEAD_TOKENS, MistralTokenCounter, fit_to_budget, utf8_size


class NoCounting:
    async def warm_up(self) -> None:
        raise AssertionError("the tokenizer was loaded")

    def count(self, text: str) -> int:
        raise AssertionError("a text was counted")


def exact_fit(fixed: list[str], history: list[str], budget: int) -> int:
    counter = MistralTokenCounter()
    used = sum(counter.count(t) + MESSAGE_OVERHEAD_TOKENS for t in fixed)
    kept = 0
    for text in history:
        used += counter.count(text) + MESSAGE_OVERHEAD_TOKENS
        if used > budget:
            break
        kept += 1
    return kept


def test_a_context_smaller_in_bytes_than_the_budget_is_kept_whole_without_counting() -> None:
    fixed = ["Tu es l'assistant de la DINUM.", "Bonjour, une question ?"]
    history = ["Réponse précédente, avec des accents é è à.", "Question précédente 🎉"]
    budget = sum(utf8_size(t) + MESSAGE_OVERHEAD_TOKENS for t in fixed + history)
    assert fit_to_budget(NoCounting(), fixed, history, budget) == len(history)


def test_the_budget_is_the_same_as_counting_every_text() -> None:
    rng = random.Random(7)
    words = ["procédure", "télétravail", "délai", "agent", "🎉", "中文", "Tchap", "123", "\n"]
    for _ in range(60):
        history = [" ".join(rng.choices(words, k=rng.randint(1, 60))) for _ in range(12)]
        fixed = ["Consigne système.", "Question ?"]
        total = sum(utf8_size(t) for t in fixed + history)
        budget = rng.randint(10, total + 100)
        counter = MistralTokenCounter()
        assert fit_to_budget(counter, fixed, history, budget) == exact_fit(fixed, history, budget)


def test_tekken_counts_match_mistral_common() -> None:
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    reference = MistralTokenizer.v3(is_tekken=True).instruct_tokenizer.tokenizer
    rng = random.Random(3)
    texts = ["Bonjour à tous !", "", "  \n\n x", "émoji 🎉 et 中文", "a" * 3000]
    for _ in range(200):
        alphabet = [chr(rng.randint(32, 126)), chr(rng.randint(160, 0x2FFF)), "\n", " "]
        texts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120))))
    counter = MistralTokenCounter()
    for text in texts:
        assert counter.count(text) == len(reference.encode(text, bos=False, eos=False)), text


def test_the_count_cache_keeps_no_text_and_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """People's messages are not kept in memory by the cache (a reset or the room's retention
    must leave none behind), and the cache stays at its size."""
    monkeypatch.setattr(tokens, "COUNT_CACHE_SIZE", 8)
    monkeypatch.setattr(tokens, "_counts", collections.OrderedDict())
    counter = MistralTokenCounter()
    secret = "Le dossier de Mme Dupont 7431 est en retard. " * 20
    first = counter.count(secret)
    assert counter.count(secret) == first  # the second time from the cache
    assert list(tokens._counts.values()) == [first]
    for key in tokens._counts:
        assert isinstance(key, bytes) and len(key) == 16 and b"7431" not in key
    assert not any(secret in repr(referrer) for referrer in gc.get_referrers(secret))
    for index in range(20):
        counter.count(f"texte {index}")
    assert len(tokens._counts) == 8
    assert counter.count(secret) == first  # evicted, counted again: same answer
