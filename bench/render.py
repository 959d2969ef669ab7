"""`python -m bench.render`: the time to render an answer's Markdown to Matrix HTML.

Times `bot.answer.render.render_markdown` (Markdown → HTML, then the nh3 cleaner) in this
process on two answers: figure 1's 60-word answer (the benchmark LLM's) and a 300-word
answer with a list and a table. A streamed answer renders at each of its sends, so this
is paid several times per answer. A third text adds raw HTML and an image, which the
renderer rewrites (the rarer, slower path). Prints ms per render: the median of several
rounds, and the best round (steadier on a shared machine).

python -m bench.render               # 7 rounds of 500 renders per text
python -m bench.render --rounds 3 --renders 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench.llm_server import bench_answer

_LIST = "\n".join(
    f"{index}. **{step}** : {detail}"
    for index, (step, detail) in enumerate(
        [
            ("Saisie", "le dossier est déposé en ligne avec les pièces justificatives."),
            ("Contrôle", "le service vérifie que le dossier est complet sous huit jours."),
            ("Validation", "le chef de service signe la décision et la date d'effet."),
            ("Notification", "l'agent reçoit la décision par courrier et sur l'intranet."),
            ("Recours", "un recours gracieux reste possible pendant deux mois."),
        ],
        start=1,
    )
)
_TABLE = "\n".join(
    [
        "| Situation | Délai | Pièce à fournir |",
        "| :-- | --: | :-- |",
        "| Congé annuel | 1 mois | formulaire signé |",
        "| Temps partiel | 2 mois | demande motivée |",
        "| Mutation | 3 mois | avis du supérieur |",
        "| Disponibilité | 3 mois | justificatif de situation |",
    ]
)


def answers() -> dict[str, str]:
    """The texts timed, by name (deterministic)."""
    long_answer = "\n\n".join(
        [bench_answer(90), _LIST, bench_answer(50), _TABLE, "*En résumé* : " + bench_answer(30)]
    )
    # Raw HTML and an image make the renderer walk and rewrite the tree (the rarer path).
    rewritten = long_answer.replace("| Mutation |", "| Mutation<br>interne |", 1) + (
        "\n\n![Logo](https://www.service-public.fr/logo.png)"
    )
    return {
        "figure 1 (60 words)": bench_answer(60),
        "300 words, list and table": long_answer,
        "the same with raw HTML and an image": rewritten,
    }


def time_render(text: str, rounds: int, renders: int) -> tuple[float, float]:
    """Median and best over `rounds` of the mean time of one render, in milliseconds."""
    from bot.answer.render import render_markdown

    render_markdown(text)  # warm-up (imports, caches)
    per_round: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(renders):
            render_markdown(text)
        per_round.append((time.perf_counter() - start) * 1000 / renders)
    return statistics.median(per_round), min(per_round)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.render", description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--renders", type=int, default=500)
    args = parser.parse_args(argv)
    for name, text in answers().items():
        median, best = time_render(text, args.rounds, args.renders)
        words = len(text.split())
        print(
            f"{name} ({words} words, {len(text)} chars): {median:.3f} ms per render "
            f"(median of {args.rounds} rounds of {args.renders}; best {best:.3f} ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
