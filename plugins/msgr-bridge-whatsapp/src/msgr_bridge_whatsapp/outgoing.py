"""Pure builders of the ``waE2E.Message`` protobufs the connector sends: text (with a reply's quote), edits,
revokes, reactions and media messages from an upload's answer. These are the shapes whatsmeow and the
WhatsApp apps use (``protocolMessage`` of type ``MESSAGE_EDIT``/``REVOKE``, ``reactionMessage`` with an
empty text to remove a reaction)."""

from __future__ import annotations

import time

from neonize.proto.Neonize_pb2 import UploadResponse
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    AudioMessage,
    ContextInfo,
    DocumentMessage,
    ExtendedTextMessage,
    FutureProofMessage,
    ImageMessage,
    Message,
    ProtocolMessage,
    ReactionMessage,
    VideoMessage,
)

from .client import MediaType


def _now_ms() -> int:
    return int(time.time() * 1000)


def reply_context(reply_to: str | None, reply_sender: str | None) -> ContextInfo | None:
    """The quote of a reply: the quoted message's id, and its sender in a group."""
    if not reply_to:
        return None
    context = ContextInfo(stanzaID=reply_to)
    if reply_sender:
        context.participant = reply_sender
    return context


def text_message(text: str, context: ContextInfo | None = None) -> Message:
    """Plain text as ``conversation``; with a quote as ``extendedTextMessage`` (the only way to carry one)."""
    if context is None:
        return Message(conversation=text)
    return Message(extendedTextMessage=ExtendedTextMessage(text=text, contextInfo=context))


def _key(chat: str, message_id: str, *, from_me: bool, participant: str | None = None) -> MessageKey:
    key = MessageKey(remoteJID=chat, fromMe=from_me, ID=message_id)
    if participant:
        key.participant = participant
    return key


def edit_message(chat: str, message_id: str, text: str) -> Message:
    """An edit of one of our own messages (WhatsApp lets only the sender edit, for 15 minutes)."""
    return Message(
        editedMessage=FutureProofMessage(
            message=Message(
                protocolMessage=ProtocolMessage(
                    key=_key(chat, message_id, from_me=True),
                    type=ProtocolMessage.MESSAGE_EDIT,
                    editedMessage=Message(conversation=text),
                    timestampMS=_now_ms(),
                )
            )
        )
    )


def revoke_message(chat: str, message_id: str) -> Message:
    """Delete for everyone, of one of our own messages."""
    return Message(
        protocolMessage=ProtocolMessage(key=_key(chat, message_id, from_me=True), type=ProtocolMessage.REVOKE)
    )


def reaction_message(chat: str, message_id: str, emoji: str, *, from_me: bool, sender: str | None) -> Message:
    """A reaction (``emoji`` empty: remove ours) on a message; ``sender`` is its author in a group."""
    return Message(
        reactionMessage=ReactionMessage(
            key=_key(chat, message_id, from_me=from_me, participant=sender if not from_me else None),
            text=emoji,
            senderTimestampMS=_now_ms(),
        )
    )


def media_type_of(mime_type: str) -> MediaType:
    major = mime_type.split("/", 1)[0].lower()
    return {"image": MediaType.MediaImage, "video": MediaType.MediaVideo, "audio": MediaType.MediaAudio}.get(
        major, MediaType.MediaDocument
    )


def media_message(
    uploaded: UploadResponse,
    media_type: MediaType,
    *,
    name: str,
    mime_type: str,
    caption: str,
    context: ContextInfo | None,
) -> Message:
    """The message that shares an uploaded file (image, video, audio or document) with its caption."""
    common = {
        "URL": uploaded.url,
        "directPath": uploaded.DirectPath,
        "mediaKey": uploaded.MediaKey,
        "fileEncSHA256": uploaded.FileEncSHA256,
        "fileSHA256": uploaded.FileSHA256,
        "fileLength": uploaded.FileLength,
        "mimetype": mime_type,
        "mediaKeyTimestamp": int(time.time()),
    }
    if context is not None:
        common["contextInfo"] = context
    if media_type == MediaType.MediaImage:
        return Message(imageMessage=ImageMessage(caption=caption, **common))
    if media_type == MediaType.MediaVideo:
        return Message(videoMessage=VideoMessage(caption=caption, **common))
    if media_type == MediaType.MediaAudio:
        return Message(audioMessage=AudioMessage(**common))
    return Message(documentMessage=DocumentMessage(fileName=name, title=name, caption=caption, **common))
