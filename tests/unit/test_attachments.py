"""The attachment edge parser: typed attachments from hostile event contents, never a crash."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.attachments import (
    Attachment,
    AttachmentError,
    AttachmentErrorReason,
    AttachmentKind,
    attachment_error_text,
    parse_attachment,
)
from bot.matrix.events import parse_message
from bot.models import MessageKind

MXC = "mxc://localhost/AbCdEf0123"
ENCRYPTED_FILE = {
    "url": MXC,
    "key": {"kty": "oct", "alg": "A256CTR", "ext": True, "k": "qcHVMSgYg-71CauWBezXI5qkaRb0LuIy"},
    "iv": "X85+XgHN+HEAAAAAAAAAAA",
    "hashes": {"sha256": "5qG4fFnbbVdlAB1Q72JDKwCagV6Dbkx9uds4rSak37c"},
    "v": "v2",
}


def event(content: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": "$e1",
        "sender": "@alice:localhost",
        "origin_server_ts": 1_700_000_000_000,
        "content": content,
    }


def test_clear_file() -> None:
    attachment = parse_attachment(
        {
            "msgtype": "m.file",
            "body": "Note de service.pdf",
            "url": MXC,
            "info": {"mimetype": "Application/PDF; charset=binary", "size": 1234},
        }
    )
    assert attachment == Attachment(
        kind=AttachmentKind.FILE,
        name="Note de service.pdf",
        mimetype="application/pdf",
        size=1234,
        url=MXC,
    )
    assert attachment.mxc_url == MXC
    assert attachment.extension == "pdf"


def test_encrypted_file_wins_over_url() -> None:
    attachment = parse_attachment(
        {"msgtype": "m.file", "body": "a.docx", "file": ENCRYPTED_FILE, "url": "mxc://x/other"}
    )
    assert attachment is not None
    assert attachment.url is None
    assert attachment.encrypted_file is not None
    assert attachment.encrypted_file.key == ENCRYPTED_FILE["key"]["k"]
    assert attachment.encrypted_file.sha256 == ENCRYPTED_FILE["hashes"]["sha256"]
    assert attachment.mxc_url == MXC


def test_voice_message_image_and_caption() -> None:
    voice = parse_attachment(
        {
            "msgtype": "m.audio",
            "body": "Message vocal",
            "url": MXC,
            "info": {"mimetype": "audio/ogg", "size": 5000},
            "org.matrix.msc1767.audio": {"duration": 4200, "waveform": [1, 2]},
            "org.matrix.msc3245.voice": {},
        }
    )
    assert voice is not None and voice.is_voice and voice.duration_ms == 4200
    image = parse_attachment(
        {
            "msgtype": "m.image",
            "body": "Voici le schéma",
            "filename": "schema.png",
            "url": MXC,
            "info": {"w": 800, "h": 600.0, "duration": True},
        }
    )
    assert image is not None
    assert (image.kind, image.name, image.caption) == (
        AttachmentKind.IMAGE,
        "schema.png",
        "Voici le schéma",
    )
    assert (image.width, image.height, image.duration_ms, image.is_voice) == (800, 600, None, False)
    # The voice marker means nothing on a file.
    not_voice = parse_attachment(
        {"msgtype": "m.file", "body": "x", "url": MXC, "org.matrix.msc3245.voice": {}}
    )
    assert not_voice is not None and not not_voice.is_voice


def test_hostile_fields_become_safe_values() -> None:
    attachment = parse_attachment(
        {
            "msgtype": "m.file",
            "body": "../../etc/\x00passwd\u202e",
            "url": MXC,
            "info": {"mimetype": "text/html<script>", "size": -5, "w": "800", "h": 10**12},
        }
    )
    assert attachment is not None
    assert attachment.name == "passwd\u202e"
    assert (attachment.mimetype, attachment.size, attachment.width, attachment.height) == (
        None,
        None,
        None,
        None,
    )
    nameless = parse_attachment({"msgtype": "m.video", "body": 12, "url": MXC, "info": []})
    assert nameless is not None and nameless.name == "video" and nameless.extension == ""


def test_unusable_locations_give_none() -> None:
    for content in (
        {"msgtype": "m.file", "body": "a"},
        {"msgtype": "m.file", "body": "a", "url": "https://evil.example/a"},
        {"msgtype": "m.file", "body": "a", "url": "mxc://localhost/../../admin"},
        {"msgtype": "m.file", "body": "a", "file": {**ENCRYPTED_FILE, "iv": None}},
        {"msgtype": "m.file", "body": "a", "file": {**ENCRYPTED_FILE, "hashes": {}}},
        {"msgtype": "m.file", "body": "a", "file": {**ENCRYPTED_FILE, "key": {"k": "a b"}}},
        {
            "msgtype": "m.file",
            "body": "a",
            "file": {**ENCRYPTED_FILE, "key": {"alg": "X", "k": "a"}},
        },
        {"msgtype": "m.text", "body": "a", "url": MXC},
    ):
        assert parse_attachment(content) is None, content


def test_parse_message_carries_the_attachment() -> None:
    message = parse_message(
        "!r:localhost", event({"msgtype": "m.file", "body": "a.pdf", "url": MXC}), "Alice", False
    )
    assert message is not None
    assert message.kind is MessageKind.ATTACHMENT
    assert message.attachment is not None and message.attachment.name == "a.pdf"
    broken = parse_message("!r:localhost", event({"msgtype": "m.file", "body": "a"}), "A", False)
    assert broken is not None and broken.kind is MessageKind.OTHER and broken.attachment is None
    text = parse_message("!r:localhost", event({"msgtype": "m.text", "body": "a"}), "A", False)
    assert text is not None and text.attachment is None


def test_error_sentences_exist_for_every_reason() -> None:
    for reason in AttachmentErrorReason:
        sentence = attachment_error_text(AttachmentError(reason, "détail technique"), 20.0)
        assert sentence and "détail" not in sentence and "{" not in sentence
    assert "20 Mo" in attachment_error_text(AttachmentError(AttachmentErrorReason.TOO_LARGE), 20)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
keys = st.sampled_from(["msgtype", "body", "filename", "url", "file", "info", "key", "iv"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(keys, json_values, max_size=8),
    st.sampled_from(["m.file", "m.image", "m.audio", "m.video"]),
    st.booleans(),
)
def test_parser_never_raises(content: dict[str, Any], msgtype: str, keep_mxc: bool) -> None:
    content = {**content, "msgtype": msgtype}
    if keep_mxc:
        content["url"] = MXC
    attachment = parse_attachment(content)
    if attachment is not None:
        assert attachment.url is not None or attachment.encrypted_file is not None
        assert "/" not in attachment.name and len(attachment.name) <= 255
