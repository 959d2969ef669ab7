"""`!avis TEXTE`: a comment for the pilot team, stored without the author's ID."""

from __future__ import annotations

from dataclasses import dataclass

from bot import texts
from bot.matrix.events import sanitize_text
from bot.pilot.service import COMMENT_MAX_CHARS
from commands.base import Command, CommandContext, UsageError


@dataclass(frozen=True)
class CommentText:
    text: str


def parse(text: str) -> CommentText:
    cleaned = sanitize_text(text, COMMENT_MAX_CHARS + 1).strip()
    if not cleaned:
        raise UsageError(texts.FEEDBACK_COMMENT_EMPTY)
    if len(cleaned) > COMMENT_MAX_CHARS:
        raise UsageError(texts.FEEDBACK_COMMENT_TOO_LONG.format(limit=COMMENT_MAX_CHARS))
    return CommentText(cleaned)


async def run(ctx: CommandContext, args: CommentText) -> None:
    if ctx.pilot is None or not ctx.pilot.feedback_on:
        await ctx.reply(texts.FEEDBACK_OFF)
        return
    await ctx.pilot.comment(ctx.message, args.text)
    await ctx.reply(texts.FEEDBACK_COMMENT_THANKS)


COMMAND: Command[CommentText] = Command(
    name="avis",
    aliases=("feedback", "commentaire"),
    summary="Donne votre avis sur l'assistant à l'équipe du pilote.",
    usage="avis <votre commentaire>",
    parse=parse,
    run=run,
    details=(
        f"Votre texte ({COMMENT_MAX_CHARS} caractères au plus) est lu par l'équipe qui évalue "
        "l'assistant. Il est enregistré sans votre identifiant ni le nom du salon. Vous pouvez "
        "aussi réagir 👍 ou 👎 à une réponse de l'assistant."
    ),
)
