"""`!config`: show the room's settings; moderators change one (audited, validated first).

A refused value changes nothing and says why, in French; an accepted one is saved with an
audit row (who, when, old, new) by RoomConfigRepository.change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot import texts
from bot.french import fold
from commands.base import Command, CommandContext, Power, UsageError
from config.room_settings import SETTING_ALIASES, RoomSettings, display_value, updated_settings
from config.settings import Settings

RESET_WORDS = {"defaut", "default", "reset", "par-defaut", "par defaut"}
MAX_SHOWN_CHARS = 300

_KEYS: dict[str, str] = {fold(alias): field for alias, field in SETTING_ALIASES.items()}


@dataclass(frozen=True)
class ConfigArgs:
    """No field: show all. Field without value: show one. Value or reset: change it."""

    field: str | None = None
    value: str | None = None
    reset: bool = False

    @property
    def changes(self) -> bool:
        return self.value is not None or self.reset


def setting_field(key: str) -> str:
    """The RoomSettings field a typed key names (aliases, accents and case ignored)."""
    try:
        return _KEYS[fold(key)]
    except KeyError:
        keys = ", ".join(RoomSettings.model_fields)
        raise UsageError(texts.CONFIG_UNKNOWN_KEY.format(key=key, keys=keys)) from None


def parse(text: str) -> ConfigArgs:
    """`` | `<clé>` | `<clé> <valeur…>` | `<clé> defaut` (the value is the rest of the line)."""
    parts = text.strip().split(maxsplit=1)
    if not parts:
        return ConfigArgs()
    field = setting_field(parts[0])
    if len(parts) == 1:
        return ConfigArgs(field=field)
    value = parts[1].strip()
    if fold(value) in RESET_WORDS:
        return ConfigArgs(field=field, reset=True)
    return ConfigArgs(field=field, value=value)


def required_power(args: ConfigArgs) -> Power:
    return Power.MODERATOR if args.changes else Power.EVERYONE


def _effective_default(field: str, settings: Settings) -> Any:
    """What an unset room value means: the administrator's setting."""
    return {
        "modele": settings.model,
        "temperature": settings.temperature,
        "retention_jours": settings.retention_days,
        "streaming": settings.streaming,
        "voix": settings.voice_messages,
    }.get(field)


def _french(value: Any) -> str:
    """Decimal comma, as French readers expect (`0,7`); `!config` accepts both."""
    if isinstance(value, float):
        return display_value(value).replace(".", ",")
    return display_value(value)


def shown_value(field: str, value: Any, settings: Settings) -> str:
    """A value as users read it: defaults spelled out, long text cut, on one line."""
    default = _effective_default(field, settings)
    if value is None and default is not None:
        return texts.CONFIG_DEFAULT_VALUE.format(value=_french(default))
    text = " ".join(_french(value).split())
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "…"


def allowed_model(name: str, settings: Settings) -> str:
    """The allow-listed spelling of `name`; raises ValueError with the French reason."""
    for model in settings.allowed_models:
        if model.lower() == name.strip().lower():
            return model
    models = ", ".join(f"`{model}`" for model in settings.allowed_models)
    raise ValueError(texts.CONFIG_MODEL_NOT_ALLOWED.format(models=models))


def new_settings(
    current: RoomSettings, field: str, raw: str | None, settings: Settings
) -> RoomSettings:
    """`current` with `field` set from `raw`, or back to its default when `raw` is None."""
    if raw is None:
        data = current.model_dump()
        data.pop(field)
        return RoomSettings.model_validate(data)
    if not raw.strip():
        raise ValueError(texts.CONFIG_VALUE_MISSING)
    if field == "modele":
        raw = allowed_model(raw, settings)
    return updated_settings(current, field, raw)


async def change_setting(ctx: CommandContext, field: str, raw: str | None) -> None:
    """Validate, persist with its audit row, confirm. Shared by `!config` and `!modele`."""
    room_id = ctx.message.room_id
    current = ctx.room_config.get(room_id)
    try:
        changed = new_settings(current, field, raw, ctx.settings)
    except ValueError as error:
        await ctx.reply(texts.CONFIG_REFUSED.format(key=field, reason=error))
        return
    old, new = getattr(current, field), getattr(changed, field)
    if old == new:
        await ctx.reply(
            texts.CONFIG_UNCHANGED.format(key=field, value=shown_value(field, new, ctx.settings))
        )
        return
    await ctx.room_config.change(room_id, ctx.message.sender, field, changed)
    await ctx.reply(
        texts.CONFIG_CHANGED.format(
            key=field,
            old=shown_value(field, old, ctx.settings),
            new=shown_value(field, new, ctx.settings),
        )
    )


def _line(field: str, room_settings: RoomSettings, settings: Settings) -> str:
    return texts.CONFIG_LINE.format(
        key=field,
        value=shown_value(field, getattr(room_settings, field), settings),
        description=RoomSettings.model_fields[field].description or "",
    )


async def run(ctx: CommandContext, args: ConfigArgs) -> None:
    if args.field is not None and args.changes:
        await change_setting(ctx, args.field, None if args.reset else args.value)
        return
    current = ctx.room_config.get(ctx.message.room_id)
    fields = [args.field] if args.field is not None else list(RoomSettings.model_fields)
    lines = [texts.CONFIG_HEADER, *(_line(field, current, ctx.settings) for field in fields)]
    lines += ["", texts.CONFIG_FOOTER.format(prefix=ctx.prefix)]
    await ctx.reply("\n".join(lines))


COMMAND: Command[ConfigArgs] = Command(
    name="config",
    aliases=("settings", "reglages", "parametres"),
    summary="Affiche les réglages du salon ; les modérateurs peuvent les modifier.",
    usage="config [clé [valeur | defaut]]",
    parse=parse,
    run=run,
    power=required_power,
    details=(
        "`config` : tous les réglages du salon et leur valeur.\n"
        "`config consigne Réponds en vers.` : change un réglage (la valeur est le reste de la "
        "ligne). Réservé aux modérateurs ; chaque changement est journalisé.\n"
        "`config consigne defaut` : revient à la valeur par défaut.\n"
        "Réglages : consigne, mode (mentions ou tous), modele, temperature (0 à 1,5), langue, "
        "retention (jours), resumes (oui/non), streaming (oui/non), voix (oui/non : messages "
        "vocaux transcrits)."
    ),
)
