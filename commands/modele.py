"""`!modele`: which Mistral model answers here; moderators switch within the allow-list."""

from __future__ import annotations

from dataclasses import dataclass

from bot import texts
from bot.french import fold
from commands.base import Command, CommandContext, Power, UsageError
from commands.config import RESET_WORDS, change_setting


@dataclass(frozen=True)
class ModelArgs:
    name: str | None = None
    reset: bool = False

    @property
    def changes(self) -> bool:
        return self.name is not None or self.reset


def parse(text: str) -> ModelArgs:
    words = text.split()
    if not words:
        return ModelArgs()
    if len(words) > 1:
        raise UsageError("un seul nom de modèle est attendu")
    if fold(words[0]) in RESET_WORDS:
        return ModelArgs(reset=True)
    return ModelArgs(name=words[0])


def required_power(args: ModelArgs) -> Power:
    return Power.MODERATOR if args.changes else Power.EVERYONE


async def run(ctx: CommandContext, args: ModelArgs) -> None:
    if args.changes:
        await change_setting(ctx, "modele", args.name)
        return
    chosen = ctx.room_config.get(ctx.message.room_id).modele
    text = texts.MODEL_SHOW.format(
        model=chosen or ctx.settings.model,
        origin=texts.MODEL_ORIGIN_ROOM if chosen else texts.MODEL_ORIGIN_DEFAULT,
        models=", ".join(f"`{model}`" for model in ctx.settings.allowed_models),
    )
    if len(ctx.settings.allowed_models) > 1:
        text += texts.MODEL_SWITCH_HINT.format(prefix=ctx.prefix)
    await ctx.reply(text)


COMMAND: Command[ModelArgs] = Command(
    name="modele",
    aliases=("model",),
    summary="Affiche le modèle Mistral utilisé ici ; les modérateurs peuvent en changer.",
    usage="modele [nom | defaut]",
    parse=parse,
    run=run,
    power=required_power,
    details=(
        "`modele` : le modèle utilisé dans ce salon et la liste des modèles autorisés par "
        "l'administrateur.\n"
        "`modele <nom>` : change de modèle (réservé aux modérateurs, journalisé) ; le nom doit "
        "figurer dans la liste autorisée.\n"
        "`modele defaut` : revient au modèle par défaut."
    ),
)
