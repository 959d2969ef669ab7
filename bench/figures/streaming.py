"""Figure 7: streamed answers as users see them — first words, complete answer, edits.

The realistic model of figure 3 (bench.figures.realistic: 0.5 s to the first token, then 300
tokens at 60 tokens/s), answered by a bot with streaming on (the production default) and one
with it off, alternately; the runs of figure 3 are reused when it ran.
"""

from __future__ import annotations

from bench.figures import realistic
from bench.figures.e2e import ensure_floor
from bench.harness import Bench
from bench.results import Figure, Row

MIN_FIRST_WORDS = 2


async def run(bench: Bench) -> list[Figure]:
    floor = await ensure_floor(bench)
    real = await realistic.ensure(bench, bench.scale.streaming_samples)
    on, off = real["on"], real["off"]
    figure = Figure(
        "streaming",
        "7. Streaming",
        f"LLM at {realistic.FIRST_TOKEN_SECONDS * 1000:.0f} ms to the first token then "
        f"{realistic.TOKENS_PER_SECOND:g} tokens/s ({real['answer_tokens']} tokens); clear DM; "
        "times from the question sent to what the asker's client shows; "
        f"{real['samples']} answers per bot.",
    )
    llm_first = on["llm_first_token_s"]["median"]
    target = llm_first + 2 * floor
    first = on["first_s"]["median"]
    first_words = on["first_message_words"]["min"]
    figure.rows = [
        Row(
            "streaming on: first words visible, median",
            first * 1000,
            "ms",
            target=f"≤ {target * 1000:.0f} ms (the LLM's first token at {llm_first * 1000:.0f} "
            f"ms + 2 echo round trips of {floor * 1000:.0f} ms)",
            passed=first <= target,
        ),
        Row(
            "streaming on: words in the first message, min",
            first_words,
            "words",
            target=f"≥ {MIN_FIRST_WORDS}",
            passed=first_words >= MIN_FIRST_WORDS,
        ),
        Row(
            "LLM server's own time to the first token (request in → token out)",
            llm_first * 1000,
            "ms",
        ),
        Row("floor: echo round trip (clear), median", floor * 1000, "ms"),
        Row("streaming on: first words visible, p99", on["first_s"]["p99"] * 1000, "ms"),
        Row("streaming on: complete answer seen, median", on["complete_s"]["median"] * 1000, "ms"),
        Row("streaming off: answer seen, median", off["complete_s"]["median"] * 1000, "ms"),
        Row(
            "LLM stream duration (first token + tokens ÷ pace)", real["stream_seconds"] * 1000, "ms"
        ),
        Row("streaming on: edits per answer, median", on["edits"]["median"], ""),
        Row("streaming on: edits per answer, max", on["edits"]["max"], ""),
    ]
    figure.data = {"floor_clear_median_s": floor, **real}
    figure.notes.append(
        "The LLM's first token is as the LLM server actually delivered it (its timer adds a "
        "few ms to the 0.5 s). The complete answer is the version without the typing cursor."
    )
    return [figure]
