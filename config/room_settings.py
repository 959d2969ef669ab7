"""Per-room settings that room moderators change with `!config`.

Stored as JSON per room; values absent from a room fall back to the administrator's defaults.
Keys are French (what moderators type), with English aliases.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class AnswerMode(StrEnum):
    MENTIONS = "mentions"
    ALL = "tous"


class RoomSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    consigne: str = Field(
        default="", max_length=2000, description="Consigne ajoutée au prompt système"
    )
    mode: AnswerMode = Field(
        default=AnswerMode.MENTIONS,
        description="Quand répondre : mentions ou tous (chaque message)",
    )
    modele: str | None = Field(default=None, description="Modèle Mistral utilisé dans ce salon")
    temperature: float | None = Field(
        default=None, ge=0.0, le=1.5, description="Créativité (0 à 1,5)"
    )
    langue: str = Field(
        default="français", min_length=2, max_length=40, description="Langue des réponses"
    )
    retention_jours: int | None = Field(
        default=None, ge=1, le=3650, description="Durée de conservation des messages (jours)"
    )
    resumes: bool = Field(default=True, description="Résumés autorisés dans ce salon (oui/non)")
    streaming: bool | None = Field(
        default=None, description="Réponses affichées au fil de l'eau (oui/non)"
    )
    voix: bool | None = Field(
        default=None, description="Messages vocaux transcrits et traités (oui/non)"
    )

    def model_or(self, default: str) -> str:
        """The room's model, else the bot's: one rule for answers, summaries and commands."""
        return self.modele or default

    def temperature_or(self, default: float) -> float:
        return self.temperature if self.temperature is not None else default

    @field_validator("consigne", "langue", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value


# What moderators may type, mapped to the field it changes.
SETTING_ALIASES: dict[str, str] = {
    "consigne": "consigne",
    "prompt": "consigne",
    "instructions": "consigne",
    "mode": "mode",
    "modele": "modele",
    "modèle": "modele",
    "model": "modele",
    "temperature": "temperature",
    "température": "temperature",
    "langue": "langue",
    "language": "langue",
    "retention": "retention_jours",
    "rétention": "retention_jours",
    "retention_jours": "retention_jours",
    "retention_days": "retention_jours",
    "resumes": "resumes",
    "résumés": "resumes",
    "summaries": "resumes",
    "streaming": "streaming",
    "voix": "voix",
    "vocal": "voix",
    "vocaux": "voix",
    "voice": "voix",
}

_TRUE = {"oui", "yes", "true", "vrai", "on", "1", "activé", "active"}
_FALSE = {"non", "no", "false", "faux", "off", "0", "désactivé", "desactive"}
_MODE_WORDS = {
    "mentions": AnswerMode.MENTIONS,
    "mention": AnswerMode.MENTIONS,
    "tous": AnswerMode.ALL,
    "tout": AnswerMode.ALL,
    "all": AnswerMode.ALL,
}


def coerce_setting_value(field: str, raw: str) -> Any:
    """Turn what a moderator typed into a value pydantic can validate (French words accepted)."""
    text = raw.strip()
    annotation = RoomSettings.model_fields[field].annotation
    if annotation in (bool, bool | None):
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("répondez oui ou non")
    if field == "mode":
        try:
            return _MODE_WORDS[text.lower()]
        except KeyError:
            raise ValueError("valeurs possibles : mentions, tous") from None
    if field == "temperature":
        return text.replace(",", ".")
    return text


def updated_settings(current: RoomSettings, field: str, raw: str) -> RoomSettings:
    """A copy of `current` with one field changed; raises ValueError in French when invalid."""
    value = coerce_setting_value(field, raw)
    data = current.model_dump()
    data[field] = value
    try:
        return RoomSettings.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        raise ValueError(_french_reason(first)) from None


def _french_reason(problem: Any) -> str:
    kind = problem.get("type", "")
    context = problem.get("ctx") or {}
    if kind == "string_too_long":
        return f"texte trop long (au plus {context.get('max_length')} caractères)"
    if kind == "string_too_short":
        return f"texte trop court (au moins {context.get('min_length')} caractères)"
    if kind in ("greater_than_equal", "greater_than"):
        return f"valeur trop petite (minimum {context.get('ge', context.get('gt'))})"
    if kind in ("less_than_equal", "less_than"):
        return f"valeur trop grande (maximum {context.get('le', context.get('lt'))})"
    if kind.startswith("float") or kind.startswith("int"):
        return "un nombre est attendu"
    return "valeur invalide"


def display_value(value: Any) -> str:
    if value is None:
        return "(par défaut)"
    if isinstance(value, bool):
        return "oui" if value else "non"
    if isinstance(value, StrEnum):
        return value.value
    if value == "":
        return "(aucune)"
    return str(value)
