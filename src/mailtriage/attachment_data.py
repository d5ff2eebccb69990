"""The bytes of a filed attachment, for the mail we send and the customer pages.

When a message is filed its attachments are cut out of it and written to the blob store
without an fsync (``worker.store_attachments``): the raw message is the durable record,
and an attachment can be cut out of it again. This is where that happens. A blob that
is missing, or whose bytes are not its sha256 any more (a power cut soon after the
write can leave a new file empty), is cut out again from the raw message of an article
that carries it, and written back.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailtriage.blobs import BlobStore
from mailtriage.inbox import stored_raw
from mailtriage.pipeline.parse import ParseError, ParseLimits, parse_message
from mailtriage.store.models import Article, Attachment, Inbound

# Raw messages tried for one attachment (they all carry the same bytes).
MAX_SOURCES = 3


class AttachmentMissing(LookupError):
    """Neither the blob store nor any raw message still has the attachment's bytes."""


def attachment_data(session: Session, blobs: BlobStore, sha256: str) -> bytes:
    """The bytes whose sha256 is ``sha256``: from the blob store when they are intact
    there, else cut out of a raw message again (and written back). Raises
    AttachmentMissing when no raw message that carries them is kept any more."""
    try:
        data = blobs.get(sha256)
    except FileNotFoundError:
        data = None
    if data is not None and hashlib.sha256(data).hexdigest() == sha256:
        return data
    found = _cut_out(session, blobs, sha256)
    if data is not None:  # a damaged file: put() keeps what exists
        blobs.path(sha256).unlink(missing_ok=True)
    blobs.put(found, durable=False, sha256=sha256)
    return found


def _cut_out(session: Session, blobs: BlobStore, sha256: str) -> bytes:
    sources = session.execute(
        select(Inbound.id, Inbound.raw_sha256)
        .join(Article, Article.inbound_id == Inbound.id)
        .join(Attachment, Attachment.article_id == Article.id)
        .where(
            Attachment.sha256 == sha256,
            Attachment.purged_at.is_(None),
            Inbound.purged_at.is_(None),
        )
        .limit(MAX_SOURCES)
    ).all()
    for inbound_id, raw_sha256 in sources:  # usually the first one has it
        kept = session.scalar(select(Inbound.raw).where(Inbound.id == inbound_id))
        try:
            raw = stored_raw(blobs, kept, raw_sha256)
            # it was filed within the limits of its day: none but its own size now
            whole = ParseLimits(max_message_bytes=len(raw), max_attachment_bytes=len(raw))
            parsed = parse_message(raw, whole)
        except (OSError, ParseError):
            continue
        for attachment in parsed.attachments:
            if attachment.sha256 == sha256:
                return bytes(attachment.data)
    raise AttachmentMissing(f"attachment {sha256[:12]}: no kept message carries it any more")
