"""Voice messages and images on the real Synapse, with the real SDK against the fake server.

A real nio user uploads what a phone would send (a JPEG carrying a GPS position, an Ogg/Opus
voice message, clear or encrypted); the bot downloads and decrypts it, prepares it, and the
fake Mistral server records exactly what reached the model.
"""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import nio
import pytest
from PIL import Image

from bot import texts
from sandbox.fake_mistral import FakeMistral
from sandbox.mistral_wire import image_urls
from tests.integration.conftest import StartBot
from tests.support.bot_helpers import ask, bot_replies, replies_to, room_with_bot
from tests.support.matrix_client import send_file, send_text, sync_once, wait_for_event
from tests.support.media_samples import (
    GPS_IFD,
    SECRET_MAKE,
    photo_with_gps,
    png,
    png_claiming,
    voice_content,
    voice_ogg,
)

pytestmark = pytest.mark.integration


def decoded_image(data_url: str) -> tuple[Image.Image, bytes]:
    header, _, payload = data_url.partition(",")
    assert header == "data:image/jpeg;base64"
    raw = base64.b64decode(payload)
    image = Image.open(io.BytesIO(raw))
    image.load()
    return image, raw


def body(event: dict[str, Any]) -> str:
    return str(event["content"]["body"])


async def dm_with_bot(client: nio.AsyncClient, bot_id: str, encrypted: bool = False) -> str:
    return await room_with_bot(client, bot_id, is_direct=True, encrypted=encrypted)


async def group_with(
    alice: nio.AsyncClient, bob: nio.AsyncClient, bot_id: str, encrypted: bool = False
) -> str:
    room_id = await room_with_bot(alice, bot_id, encrypted=encrypted, name="Courrier")
    await alice.room_invite(room_id, bob.user_id)
    await bob.join(room_id)
    await sync_once(bob)
    await sync_once(alice)
    return room_id


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
async def test_dm_photo_then_question_reaches_the_vision_model_without_its_metadata(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral, encrypted: bool
) -> None:
    bot = await start_bot(image_question_wait_seconds=60)
    alice = await user_client("alice", encryption=encrypted)
    room_id = await dm_with_bot(alice, bot.user_id, encrypted=encrypted)

    photo = photo_with_gps((3000, 2000))
    assert SECRET_MAKE.encode() in photo
    image_event = await send_file(alice, room_id, photo, "courrier.jpg", "image/jpeg", "m.image")
    answer = await ask(alice, room_id, bot.user_id, "Que dit ce courrier ?")

    assert body(answer).startswith("Réponse simulée (1 image) : Que dit ce courrier ?")
    vision = [r for r in fake_llm.requests if image_urls(r)]
    assert len(vision) == 1, "one question, one request with the image"
    request = vision[0]
    assert request["model"] == bot.settings.vision_model
    image, raw = decoded_image(image_urls(request)[0])
    assert max(image.size) == bot.settings.image_max_side_px
    assert GPS_IFD not in image.getexif() and len(image.getexif()) == 0
    assert SECRET_MAKE.encode() not in raw
    # The image itself got no answer of its own: the question took it.
    follow_up = await ask(alice, room_id, bot.user_id, "Et en une phrase ?")
    replies_to_image = [
        e for e in bot_replies(alice, room_id, bot.user_id) if replies_to(image_event)(e)
    ]
    assert not replies_to_image
    # The room's memory keeps a placeholder and the answer, never the picture.
    history = fake_llm.requests[-1]["messages"]
    assert not image_urls(fake_llm.requests[-1])
    assert any("[image : courrier.jpg]" in str(m["content"]) for m in history)
    assert "base64" not in str(history)
    assert body(follow_up).startswith("Réponse simulée")


async def test_dm_photo_alone_is_described(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(image_question_wait_seconds=0.5)
    alice = await user_client("alice")
    room_id = await dm_with_bot(alice, bot.user_id)

    event_id = await send_file(alice, room_id, png(), "schema.png", "image/png", "m.image")
    answer = await wait_for_event(alice, room_id, replies_to(event_id))

    assert body(answer).startswith("Réponse simulée (1 image) : Décris brièvement cette image")
    assert image_urls(fake_llm.last_request)


async def test_dm_photo_with_caption_is_a_question(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(image_question_wait_seconds=60)
    alice = await user_client("alice")
    room_id = await dm_with_bot(alice, bot.user_id)

    event_id = await send_file(
        alice,
        room_id,
        png(),
        "tableau.png",
        "image/png",
        "m.image",
        extra_content={"body": "Combien de colonnes ?", "filename": "tableau.png"},
    )
    answer = await wait_for_event(alice, room_id, replies_to(event_id))
    assert body(answer).startswith("Réponse simulée (1 image) : Combien de colonnes ?")


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
async def test_group_reply_with_mention_to_a_colleague_image(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral, encrypted: bool
) -> None:
    bot = await start_bot()
    alice = await user_client("alice", encryption=encrypted)
    bob = await user_client("bob", encryption=encrypted)
    room_id = await group_with(alice, bob, bot.user_id, encrypted=encrypted)

    image_event = await send_file(bob, room_id, png(), "planning.png", "image/png", "m.image")
    await wait_for_event(alice, room_id, lambda e: e.get("event_id") == image_event)
    question = await send_text(
        alice,
        room_id,
        f"{bot.user_id} que montre ce planning ?",
        mentions=[bot.user_id],
        reply_to=image_event,
    )
    answer = await wait_for_event(alice, room_id, replies_to(question))

    assert "(1 image)" in body(answer)
    assert "que montre ce planning" in body(answer)
    assert len([r for r in fake_llm.requests if image_urls(r)]) == 1


async def test_group_image_without_mention_is_not_answered(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    bob = await user_client("bob")
    room_id = await group_with(alice, bob, bot.user_id)

    await send_file(bob, room_id, png(), "photo.png", "image/png", "m.image")
    # A later mention is answered: the image before it was seen and left alone.
    answer = await ask(
        alice, room_id, bot.user_id, f"{bot.user_id} bonjour", mentions=[bot.user_id]
    )
    assert "(1 image)" not in body(answer)
    assert not any(image_urls(r) for r in fake_llm.requests)


async def test_bad_images_get_one_sentence_and_the_room_goes_on(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(image_question_wait_seconds=0)
    alice = await user_client("alice")
    room_id = await dm_with_bot(alice, bot.user_id)

    cases = [
        (png()[:60], "coupee.png", texts.IMAGE_UNREADABLE),
        (b"", "vide.png", texts.IMAGE_UNREADABLE),
        (b"%PDF-1.4 pas une image", "faux.jpg", texts.IMAGE_UNREADABLE),
        (
            png_claiming(60_000, 60_000),
            "bombe.png",
            texts.IMAGE_TOO_MANY_PIXELS.format(max_mp="50"),
        ),
    ]
    for data, name, sentence in cases:
        event_id = await send_file(alice, room_id, data, name, "image/png", "m.image")
        notice = await wait_for_event(alice, room_id, replies_to(event_id))
        assert body(notice) == sentence, name
        assert notice["content"]["msgtype"] == "m.notice"

    answer = await ask(alice, room_id, bot.user_id, "Toujours là ?")
    assert body(answer) == "Réponse simulée : Toujours là ?"
    assert not any(image_urls(r) for r in fake_llm.requests)


async def test_model_without_vision_gets_one_sentence(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.vision_models = set()
    bot = await start_bot(image_question_wait_seconds=0)
    alice = await user_client("alice")
    room_id = await dm_with_bot(alice, bot.user_id)

    event_id = await send_file(alice, room_id, png(), "photo.png", "image/png", "m.image")
    notice = await wait_for_event(alice, room_id, replies_to(event_id))
    assert body(notice) == texts.IMAGE_UNSUPPORTED


# --- Voice ------------------------------------------------------------------------------------


async def send_voice(
    client: nio.AsyncClient,
    room_id: str,
    seconds: float = 2.0,
    data: bytes | None = None,
    reply_to: str | None = None,
) -> str:
    """A voice message as Element and Tchap send it (optionally replying to an event)."""
    extra: dict[str, Any] = dict(voice_content(seconds))
    if reply_to is not None:
        extra["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    return await send_file(
        client,
        room_id,
        voice_ogg(seconds) if data is None else data,
        "Message vocal.ogg",
        "audio/ogg",
        "m.audio",
        info={"duration": int(seconds * 1000)},
        extra_content=extra,
    )


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
async def test_dm_voice_message_is_transcribed_and_answered(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral, encrypted: bool
) -> None:
    fake_llm.transcription_text = "Quelle est la date limite de dépôt des congés ?"
    bot = await start_bot()
    alice = await user_client("alice", encryption=encrypted)
    room_id = await dm_with_bot(alice, bot.user_id, encrypted=encrypted)

    voice = voice_ogg(2.0)
    event_id = await send_voice(alice, room_id, data=voice)
    answer = await wait_for_event(alice, room_id, replies_to(event_id))

    assert body(answer) == (
        "> 🎤 Quelle est la date limite de dépôt des congés ?\n\n"
        "Réponse simulée : Quelle est la date limite de dépôt des congés ?"
    )
    [transcription] = fake_llm.transcriptions
    assert transcription["model"] == "voxtral-mini-latest"
    assert transcription["language"] == "fr"
    assert transcription["file_name"] == "voix.ogg"
    assert transcription["content"] == voice, "the very bytes sent, decrypted"
    # The transcript is the person's text in the room's memory.
    stored = await bot.store.messages.get(event_id)
    assert stored.body == "Quelle est la date limite de dépôt des congés ?"
    await ask(alice, room_id, bot.user_id, "Et pour les RTT ?")
    history = [m["content"] for m in fake_llm.last_request["messages"]]
    assert "Quelle est la date limite de dépôt des congés ?" in history
    assert not any(str(m).startswith("> 🎤") for m in history)


async def test_dm_voice_streamed_answer_starts_with_the_transcript(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.transcription_text = "Résume la note de service."
    bot = await start_bot(streaming=True)
    alice = await user_client("alice")
    room_id = await dm_with_bot(alice, bot.user_id)

    event_id = await send_voice(alice, room_id)

    def final_text(event: dict[str, Any]) -> str:
        """The answer's text once complete: its last edit, or the message itself when the
        model was done before the first send (one message, no edit)."""
        content = event["content"]
        body = str(content.get("m.new_content", content).get("body", ""))
        return "" if body.endswith("▍") else body

    final = await wait_for_event(
        alice, room_id, lambda e: e["sender"] == bot.user_id and bool(final_text(e))
    )
    assert final_text(final) == (
        "> 🎤 Résume la note de service.\n\nRéponse simulée : Résume la note de service."
    )
    assert event_id


async def test_group_transcribe_command_posts_a_colleague_transcript(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.transcription_text = "Je serai en retard à la réunion."
    bot = await start_bot()
    alice = await user_client("alice")
    bob = await user_client("bob")
    room_id = await group_with(alice, bob, bot.user_id)

    voice = await send_voice(bob, room_id)
    await wait_for_event(alice, room_id, lambda e: e.get("event_id") == voice)
    command = await send_text(alice, room_id, "!transcrire", reply_to=voice)
    posted = await wait_for_event(alice, room_id, replies_to(command))

    assert "Je serai en retard à la réunion." in body(posted)
    assert posted["content"]["msgtype"] == "m.text"
    assert len(fake_llm.transcriptions) == 1
    assert not fake_llm.requests, "a transcript is not a question"
    # Replying to a text, or to nothing: one sentence each.
    text = await send_text(bob, room_id, "Ceci est un texte.")
    await wait_for_event(alice, room_id, lambda e: e.get("event_id") == text)
    wrong = await send_text(alice, room_id, "!transcrire", reply_to=text)
    notice = await wait_for_event(alice, room_id, replies_to(wrong))
    assert body(notice) == texts.TRANSCRIBE_NOT_AUDIO
    lone = await send_text(alice, room_id, "!transcribe")
    notice = await wait_for_event(alice, room_id, replies_to(lone))
    assert body(notice) == texts.TRANSCRIBE_NEEDS_REPLY.format(prefix="!")
    # A transcribed voice message is part of the room's summaries, as the person's words.
    await ask(alice, room_id, bot.user_id, "!resume 10")
    assert fake_llm.requests_containing("Je serai en retard à la réunion.")


async def test_group_voice_message_replying_to_the_bot_is_a_question(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.transcription_text = "Et pour la Bretagne ?"
    bot = await start_bot()
    alice = await user_client("alice")
    bob = await user_client("bob")
    room_id = await group_with(alice, bob, bot.user_id)

    first = await ask(
        alice, room_id, bot.user_id, f"{bot.user_id} météo en Normandie ?", mentions=[bot.user_id]
    )
    ignored = await send_voice(bob, room_id)  # not for the bot
    voice = await send_voice(alice, room_id, reply_to=first["event_id"])
    answer = await wait_for_event(alice, room_id, replies_to(voice))

    assert body(answer).startswith("> 🎤 Et pour la Bretagne ?")
    assert len(fake_llm.transcriptions) == 1, "the voice message not addressed is not sent"
    assert ignored


async def test_voice_limits_bad_audio_and_room_switch(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(voice_max_seconds=3)
    alice = await user_client("alice")
    room_id = await dm_with_bot(alice, bot.user_id)

    too_long = await send_voice(alice, room_id, seconds=5)
    notice = await wait_for_event(alice, room_id, replies_to(too_long))
    assert body(notice) == texts.VOICE_TOO_LONG.format(minutes="3 secondes")

    # A client that lies about the duration is measured anyway.
    liar = await send_voice(alice, room_id, seconds=1, data=voice_ogg(5))
    notice = await wait_for_event(alice, room_id, replies_to(liar))
    assert body(notice) == texts.VOICE_TOO_LONG.format(minutes="3 secondes")

    for data in (b"", voice_ogg(2)[:300], b"pas du son du tout"):
        broken = await send_voice(alice, room_id, data=data)
        notice = await wait_for_event(alice, room_id, replies_to(broken))
        assert body(notice) == texts.VOICE_UNREADABLE
    assert not fake_llm.transcriptions

    await ask(alice, room_id, bot.user_id, "!config voix non")
    off = await send_voice(alice, room_id)
    notice = await wait_for_event(alice, room_id, replies_to(off))
    assert body(notice) == texts.VOICE_DISABLED
    assert not fake_llm.transcriptions


async def test_endpoint_without_transcription_gets_one_sentence(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.transcription_supported = False
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await dm_with_bot(alice, bot.user_id)

    voice = await send_voice(alice, room_id)
    notice = await wait_for_event(alice, room_id, replies_to(voice))
    assert body(notice) == texts.VOICE_UNSUPPORTED
    answer = await ask(alice, room_id, bot.user_id, "Et par écrit ?")
    assert body(answer) == "Réponse simulée : Et par écrit ?"


async def test_model_failure_after_a_transcript_is_one_notice(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    """Streaming on: the quoted transcript waits for the model's first token, so a model that
    fails leaves one notice, not a half-answer holding the transcript."""
    fake_llm.transcription_text = "Où en est mon dossier ?"
    bot = await start_bot(streaming=True, llm_max_retries=0)
    alice = await user_client("alice")
    room_id = await dm_with_bot(alice, bot.user_id)

    fake_llm.fail_next(1, status=503)
    voice = await send_voice(alice, room_id)
    notice = await wait_for_event(alice, room_id, replies_to(voice))
    assert body(notice) == texts.LLM_UNAVAILABLE
    # The next question is answered; the transcript stays the voice message's stored text.
    answer = await ask(alice, room_id, bot.user_id, "Tu es là ?")
    assert [e for e in bot_replies(alice, room_id, bot.user_id) if replies_to(voice)(e)] == [notice]
    assert answer["sender"] == bot.user_id
    assert fake_llm.last_request["messages"][-1]["content"].endswith("Tu es là ?")
    assert (await bot.store.messages.get(voice)).body == "Où en est mon dossier ?"


async def test_dm_image_waiting_for_its_question_survives_a_restart(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    """The wait is in memory; the claim is in SQLite: after a restart the image is described."""
    bot = await start_bot(image_question_wait_seconds=600)
    alice = await user_client("alice")
    room_id = await dm_with_bot(alice, bot.user_id)

    event_id = await send_file(alice, room_id, png(), "plan.png", "image/png", "m.image")
    for _ in range(300):  # the claim is written as the event arrives
        if await bot.store.triggers.status(event_id) == "pending":
            break
        await asyncio.sleep(0.05)
    assert await bot.store.triggers.status(event_id) == "pending"
    assert not fake_llm.requests
    await bot.restart()

    answer = await wait_for_event(alice, room_id, replies_to(event_id))
    assert body(answer).startswith("Réponse simulée (1 image) : Décris brièvement")
    for _ in range(300):  # recorded once the send has returned, just after the client sees it
        if await bot.store.triggers.status(event_id) == "answered":
            break
        await asyncio.sleep(0.05)
    assert await bot.store.triggers.status(event_id) == "answered"
