"""`!transcrire`: in reply to a voice message, post its transcript (for everyone in the room)."""

from __future__ import annotations

from bot import texts
from bot.answer.media import MediaError, is_voice
from commands.base import Command, CommandContext, NoArgs, no_arguments


async def run(ctx: CommandContext, _: NoArgs) -> None:
    media = ctx.media
    if media is None or ctx.message.reply_to_event_id is None:
        await ctx.reply(texts.TRANSCRIBE_NEEDS_REPLY.format(prefix=ctx.prefix))
        return
    voice = await media.replied_message(ctx.message)
    if voice is None:
        await ctx.reply(texts.TRANSCRIBE_UNREADABLE)
        return
    if not is_voice(voice):
        await ctx.reply(texts.TRANSCRIBE_NOT_AUDIO)
        return
    if not media.voice_enabled(ctx.room_settings):
        await ctx.reply(texts.VOICE_DISABLED)
        return
    try:
        transcript = await media.transcribe(voice)
    except MediaError as error:
        await ctx.reply(error.text)
        return
    quoted = "\n> ".join(line for line in transcript.text.splitlines() if line.strip())
    await ctx.reply(
        texts.VOICE_TRANSCRIPT_POST.format(sender=voice.sender_name, transcript=quoted),
        notice=False,
    )


COMMAND: Command[NoArgs] = Command(
    name="transcrire",
    aliases=("transcribe", "transcription"),
    summary="En réponse à un message vocal : affiche sa transcription.",
    usage="transcrire",
    parse=no_arguments,
    run=run,
    uses_llm=True,
    details=(
        "Répondez à un message vocal avec `transcrire` : le bot publie ce qui y est dit. "
        "La transcription devient le texte de ce message pour les résumés. "
        "Indisponible si le salon a désactivé les messages vocaux (`config voix non`)."
    ),
)
