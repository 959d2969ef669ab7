"""Running a room's custom command: its template filled with the user's text and the room's
recent messages, sent to the model like a question."""

from __future__ import annotations

import string

from bot import texts
from bot.answer.conversation import error_text
from bot.answer.llm import ChatMessage, ChatRequest
from bot.answer.llm_failures import LLMError
from bot.answer.summary import transcript
from bot.answer.untrusted import as_code, as_code_block, fence
from bot.pilot import usage
from bot.store.database import CustomCommand
from commands.base import CommandContext, UsageError

TEMPLATE_MAX_CHARS = 2000
TEXT_FIELD = "texte"
ROOM_FIELD = "resume"
ALLOWED_FIELDS = {TEXT_FIELD, ROOM_FIELD}
RECENT_MESSAGES = 50


def describe(command: CustomCommand, prefix: str) -> str:
    """A custom command shown in full (for `!aide <nom>` and `!commande voir <nom>`)."""
    return texts.CUSTOM_SHOW.format(
        prefix=prefix,
        name=command.name,
        description=as_code(command.description),
        template=as_code_block(command.template),
    )


def template_fields(template: str) -> set[str]:
    """The placeholders of a template; raises UsageError (French) if it is malformed."""
    if not template.strip():
        raise UsageError(texts.CUSTOM_TEMPLATE_EMPTY)
    if len(template) > TEMPLATE_MAX_CHARS:
        raise UsageError(texts.CUSTOM_TEMPLATE_TOO_LONG.format(limit=TEMPLATE_MAX_CHARS))
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        raise UsageError(texts.CUSTOM_TEMPLATE_SYNTAX) from None
    fields = set()
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in ALLOWED_FIELDS or spec or conversion:
            raise UsageError(texts.CUSTOM_TEMPLATE_BAD_FIELD.format(field=as_code(f"{{{field}}}")))
        fields.add(field)
    return fields


def fill(template: str, text: str, room_transcript: str) -> str:
    """Substitute once: braces inside the user's text are kept as typed, never re-expanded."""
    return template.format_map({TEXT_FIELD: text, ROOM_FIELD: room_transcript})


async def run_custom(ctx: CommandContext, command: CustomCommand, text: str) -> None:
    from commands.resume import select_window
    from commands.resume_args import ResumeArgs

    fields = template_fields(command.template)
    if TEXT_FIELD in fields and not text.strip():
        await ctx.reply(texts.CUSTOM_NEEDS_TEXT.format(prefix=ctx.prefix, name=command.name))
        return
    room_transcript = ""
    if ROOM_FIELD in fields:
        window = await select_window(
            ctx, ResumeArgs(count=RECENT_MESSAGES), ctx.message.thread_root_id
        )
        room_transcript = fence("\n".join(transcript(window.messages)))
    prompt = fill(command.template, text.strip(), room_transcript)
    system = ctx.conversation.system_prompt(ctx.room, ctx.room_settings)
    request = ChatRequest(
        messages=[ChatMessage("system", system), ChatMessage("user", prompt)],
        model=ctx.room_settings.model_or(ctx.settings.model),
        temperature=ctx.room_settings.temperature_or(ctx.settings.temperature),
        max_tokens=ctx.settings.max_answer_tokens,
    )
    try:
        completion = await ctx.llm.complete(request)
    except LLMError as error:
        usage.current().kind = "custom"
        usage.current().failed()
        await ctx.reply(error_text(error))
        return
    await ctx.store.usage.record(
        ctx.message.room_id, completion.prompt_tokens, completion.completion_tokens
    )
    event_ids = await ctx.reply(completion.text, notice=False)
    usage.current().answered(
        "custom", event_ids, request.model, completion.prompt_tokens, completion.completion_tokens
    )
