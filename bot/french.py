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


def french_number(value: float) -> str:
    """`12345` → `12 345`, `2.5` → `2,5` (narrow no-break space, decimal comma)."""
    if isinstance(value, float) and not value.is_integer():
        text = f"{value:,.2f}".rstrip("0").rstrip(".")
    else:
        text = f"{int(value):,}"
    return text.replace(",", "\u202f").replace(".", ",")


def command_key(word: str) -> str:
    """Case- and accent-insensitive command names: `!Résumé` and `!oublie_moi` find theirs."""
    return fold(word).replace("_", "-")
