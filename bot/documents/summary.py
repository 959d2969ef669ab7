"""`!resume` on a document: map-reduce over its passages, like room summaries.

A document that fits the budget is summarised in one request; a longer one is cut into parts
(consecutive passages, overlap removed) summarised concurrently, then merged — recursively if
the partial summaries themselves do not fit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from bot import texts
from bot.answer.llm import ChatMessage, ChatRequest, LLMClient
from bot.answer.tokens import MESSAGE_OVERHEAD_TOKENS, TokenCounter
from bot.store.documents import StoredPassage

MIN_PART_TOKENS = 256


@dataclass
class DocumentSummary:
    text: str
    parts: int
    calls: int
    prompt_tokens: int = 0
    completion_tokens: int = 0


class DocumentSummarizer:
    def __init__(
        self,
        llm: LLMClient,
        tokens: TokenCounter,
        *,
        context_budget: int,
        max_answer_tokens: int,
        max_parallel: int = 4,
    ) -> None:
        self._llm = llm
        self._tokens = tokens
        self._budget = context_budget
        self._answer = max_answer_tokens
        self._parallel = asyncio.Semaphore(max_parallel)

    def _room_for(self, system: str) -> int:
        fixed = self._tokens.count(system) + 2 * MESSAGE_OVERHEAD_TOKENS + self._answer + 32
        return max(MIN_PART_TOKENS, self._budget - fixed)

    async def summarize(
        self,
        passages: Sequence[StoredPassage],
        *,
        instructions: str,
        language: str,
        model: str,
        temperature: float,
    ) -> DocumentSummary:
        """Raises LLMError."""
        result = DocumentSummary(text="", parts=0, calls=0)

        def system(task: str) -> str:
            filled = task.format(language=language)
            return f"{instructions}\n\n{filled}" if instructions else filled

        async def complete(task: str, user: str) -> str:
            request = ChatRequest(
                messages=[ChatMessage("system", system(task)), ChatMessage("user", user)],
                model=model,
                temperature=temperature,
                max_tokens=self._answer,
            )
            async with self._parallel:
                completion = await self._llm.complete(request)
            result.calls += 1
            result.prompt_tokens += completion.prompt_tokens
            result.completion_tokens += completion.completion_tokens
            return completion.text.strip()

        texts_in_order = _without_overlap([p.text for p in passages])
        budget = self._room_for(system(texts.DOCUMENT_SUMMARY_TASK_PART))
        parts = await asyncio.to_thread(_group, self._tokens, texts_in_order, budget)
        result.parts = len(parts)
        if len(parts) == 1:
            result.text = await complete(texts.DOCUMENT_SUMMARY_TASK_SINGLE, parts[0])
            return result
        total = len(parts)
        partials = await asyncio.gather(
            *(
                complete(
                    texts.DOCUMENT_SUMMARY_TASK_PART,
                    f"{texts.DOCUMENT_PART_HEADER.format(index=i, total=total)}\n\n{part}",
                )
                for i, part in enumerate(parts, start=1)
            )
        )
        merge_budget = self._room_for(system(texts.DOCUMENT_SUMMARY_TASK_MERGE))
        while True:
            labelled = [
                f"{texts.DOCUMENT_PART_HEADER.format(index=i, total=len(partials))}\n{text}"
                for i, text in enumerate(partials, start=1)
            ]
            groups = _group(self._tokens, labelled, merge_budget, minimum_items=2)
            if len(groups) == 1:
                result.text = await complete(texts.DOCUMENT_SUMMARY_TASK_MERGE, groups[0])
                return result
            partials = list(
                await asyncio.gather(
                    *(complete(texts.DOCUMENT_SUMMARY_TASK_MERGE, group) for group in groups)
                )
            )


def _without_overlap(pieces: list[str]) -> list[str]:
    """Consecutive passages share a few hundred characters: keep them once."""
    result: list[str] = []
    for piece in pieces:
        if result:
            previous = result[-1]
            for size in range(min(len(previous), len(piece), 400), 20, -1):
                if previous.endswith(piece[:size]):
                    piece = piece[size:].lstrip()
                    break
        if piece:
            result.append(piece)
    return result


def _group(
    tokens: TokenCounter, items: list[str], budget: int, minimum_items: int = 1
) -> list[str]:
    """Consecutive items joined into groups of at most `budget` tokens (a group holds at least
    `minimum_items` items, so merging always shrinks the list and ends)."""
    groups: list[list[str]] = []
    current: list[str] = []
    used = 0
    for item in items:
        cost = tokens.count(item) + 2
        if current and len(current) >= minimum_items and used + cost > budget:
            groups.append(current)
            current, used = [], 0
        current.append(item)
        used += cost
    if current:
        groups.append(current)
    return ["\n\n".join(group) for group in groups]
