"""Which passages answer a question: FTS5 (BM25) and, when available, embeddings, merged by
reciprocal rank fusion; then as many as fit the token budget, cited by number.

The question is data from a room member: it becomes an FTS5 expression of quoted words only
(no operator of theirs survives), and it is only ever matched against this room's passages.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

RRF_K = 60  # the usual constant: rank 1 → 1/61, rank 10 → 1/70
MAX_QUERY_WORDS = 24
_WORD = re.compile(r"\w+", re.UNICODE)

# Words that say nothing about which passage answers (folded: no accents).
STOPWORDS = frozenset(
    """
    alors au aucun aussi autre aux avec avoir bon car ce cela ces cet cette ceci ci comme
    comment dans de des doit donc dos du elle elles en encore est et etait etre eu fait faire
    fois ici il ils je la le les leur leurs lui ma mais me meme mes moi mon ne ni nos notre
    nous on ou par parce pas peu peut plus pour pourquoi quand que quel quelle quelles quels
    qui quoi sa sans se ses si son sont sous sur ta te tes toi ton tous tout toute toutes tres
    tu un une vos votre vous ya etes sera seront avait avaient ont aura cest quil quelles dit
    dire document documents fichier fichiers texte page pages resume resumer explique expliquer
    peux pouvez svp merci bonjour donne donner quels quelle what the and for are this that with
    from have which how
    """.split()  # noqa: SIM905 - a word list reads better as text
)


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def query_words(question: str) -> list[str]:
    """The question's content words, folded, deduplicated, in order."""
    words: list[str] = []
    for word in _WORD.findall(fold(question)):
        if len(word) < 3 or word in STOPWORDS or (word.isdigit() and len(word) < 4):
            continue
        if word not in words:
            words.append(word)
    return words[:MAX_QUERY_WORDS]


def fts_expression(question: str, skip: frozenset[str] | set[str] = frozenset()) -> str | None:
    """`"w1" OR "w2"* OR ...`: quoted (inert) words; longer words also match as prefixes, so
    plurals and derived forms are found (rapport → rapports). Words in `skip` (too common in
    the index) are left out unless nothing else remains."""
    words = query_words(question)
    words = [word for word in words if word not in skip] or words
    if not words:
        return None
    terms = []
    for word in words:
        stem = word[:7] if len(word) > 7 else word
        terms.append(f'"{stem}"*' if len(word) >= 5 else f'"{word}"')
    return " OR ".join(terms)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[int]:
    """Merge ranked ID lists: score(id) = Σ 1 / (k + rank). Ties keep first-seen order."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda item: -scores[item])
