"""French words and Paris time: the small helpers every wing shares, written once."""

from __future__ import annotations

import unicodedata
from zoneinfo import ZoneInfo

#: Agents read every date and time in Paris time, whatever the server's zone.
PARIS = ZoneInfo("Europe/Paris")


def fold(text: str) -> str:
    """Lower-case without accents, so `Défaut`, `defaut` and `DEFAUT` compare equal."""
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def command_key(word: str) -> str:
    """Case- and accent-insensitive command names: `!Résumé` and `!oublie_moi` find theirs."""
    return fold(word).replace("_", "-")
