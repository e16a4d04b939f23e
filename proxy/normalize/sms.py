"""A text message (SMS/MMS) or a call, as the carrier reported it, to an `InboundMessage`.

Rules this module keeps:
1. Numbers are read with phonenumbers into E.164 using the configured default region, so
   "(555) 010-0199", "555.010.0199" and "+15550100199" are one sender.
2. A sender that is not a phone number (an alphanumeric sender id) is kept as written; it
   simply matches no phone rule.
3. `raw` is whatever the channel will seal (the webhook's parameters); normalize only reads
   the values it is given.
4. Total and bounded as email is: text is made valid (`proxy.normalize.valid`), and past
   the caps of `proxy.normalize.limits` the message is marked incomplete.
"""

from __future__ import annotations

from datetime import datetime

from proxy.fold import fold
from proxy.identity import e164
from proxy.message import Channel, Envelope, Identity, IdentityKind, InboundMessage
from proxy.normalize.limits import LIMITS
from proxy.normalize.mentions import mentions_in
from proxy.normalize.valid import valid_text


def normalize_sms(
    *,
    sender: str,
    recipient: str,
    text: str,
    raw: bytes,
    received_at: datetime,
    default_region: str | None = None,
    provider_id: str | None = None,
    channel: Channel = Channel.SMS,
) -> InboundMessage:
    """Read one inbound text or call into the value the rules decide on."""
    sender, recipient = valid_text(sender), valid_text(recipient)
    text = valid_text(text)
    number = e164(sender, default_region) or sender.strip()
    read, complete = text[: LIMITS.message_text], len(text) <= LIMITS.message_text
    mentions, all_mentions = mentions_in(read, default_region, limit=LIMITS.mentions)
    return InboundMessage(
        channel=channel,
        raw=raw,
        envelope=Envelope(sender=sender, recipients=(recipient,)),
        senders=(Identity(kind=IdentityKind.PHONE, value=number, source="caller"),),
        mentions=mentions,
        subject="",
        text=text,
        search_text=fold(read),
        received_at=received_at,
        provider_id=provider_id,
        complete=complete and all_mentions,
    )
