"""Delivering a released item the way the daemon delivers an allowed one: no second path.

Rules this module keeps:
1. The daemon's own code, configured as the daemon is: an email goes to the next hop
   `open_next_hop` opens for the SMTP channel's `deliver` (envelope sender and recipients
   as sealed, the `Received:` line the filter adds, `pipeline.received_line`), or, for
   mail pulled from an IMAP account, to that account's `deliver` and recipient as the
   pull does; the bytes are otherwise exactly the original. A text is forwarded to the
   survivor's phone as the SMS channel forwards an allowed one (`line.forward_bodies`:
   "From <number>: <text>"), from the public number, through `provider.Provider`.
2. `plan` is pure: the config and the item in, a route out, or `CannotDeliver` saying
   in one line why no channel can carry it: mail held from a mailbox nocontact only
   watches (put back, the watcher would hold it again), a channel that is not configured,
   no recorded recipient for an SMTP or LMTP hop, or a next hop that is the filter's own
   listening address (the mail would pass the rules again and be held again).
3. Released mail carries no mark of its own: the next hop is after the filter (Postfix's
   reinjection port, LMTP, a Maildir), so it never meets the rules again; a mark the
   filter trusted is one the blocked person could forge.
4. `deliver` returns only once the next hop or the provider took it (hops.py rule 1);
   every failure is `NotDelivered`: one line fit to show a contact, naming no content.
   A long text goes as several, and a next hop may take mail for some recipients only:
   either counts as failed, and a retry sends all of it again (a rare duplicate, never
   a loss).
5. A text's pictures are not sent: the provider's copy was deleted when it was sealed
   (`redact_at_provider`), and nocontact serves nothing to the outside. They stay in the
   archive; `TextRoute.media_kept` counts them so the page can say so.
6. A relay (relaying.py) goes the same way as the item it summarizes would have:
   `plan_summary` makes a new plain-text email (from nocontact at the SMTP channel's
   hostname, with a null envelope sender: nothing bounces to him; to the sealed
   recipients) for the next hop an email of his would take, or texts of the summary
   alone (no "From <number>:") to her phone for a text, call or voicemail. Nothing of
   his message goes: not its bytes, headers, Received line or sender. The email's
   `Reply-To:` is the relaying contact's own address (config `contacts[].email`), so
   her answer goes to her contact, never to him; a texted summary ends with a line
   telling her to answer her contact directly (relaying.py rule 4).
7. A reply to him (replying.py) goes to the addressee replying.py chose, never another:
   by email a new plain-text message from `outbound.from` to his address, subject
   `replying.SUBJECT`, sent through the `outbound:` SMTP relay with aiosmtplib (its
   login, its TLS: the certificate checked against the system's CAs, or `ca_file`'s, and
   its name; an untrusted one is its own line); with no `outbound:` section there is no
   way to send one
   (`CannotDeliver`). By text, from the public Twilio number (`channels.sms.number`) to
   his number through `provider.Provider`. A failure is `NotDelivered`, one line.
8. The automatic card (proxy/alerts/card.py) goes the same way as a relay: `plan_note`
   needs only the item's `Way` (its channel, sealed recipients and IMAP pull account),
   which the alerts keep, not its seal; `plan_summary` is `plan_note` on the seal's way.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path

import aiosmtplib

from proxy.access.render import phone_words
from proxy.access.replying import SUBJECT, Addressee
from proxy.alerts.card import Way
from proxy.archive.metadata import SealedItem
from proxy.channels.sms.line import MAX_BODY, forward_bodies
from proxy.channels.sms.provider import Provider, ProviderRefused, ProviderUnavailable
from proxy.channels.sms.runner import SmsStartError, auth_token
from proxy.config import Config
from proxy.config.model import Outbound, SmsChannel
from proxy.deliver.address import Destination, Scheme, parse_destination, parse_listen
from proxy.deliver.hops import DeliveryDeferred, DeliveryRefused, open_next_hop
from proxy.errors import NocontactError
from proxy.identity import e164
from proxy.message import Channel
from proxy.pipeline import received_line

_OUTBOUND_TIMEOUT = 60  # seconds, for the whole of a reply's SMTP session
_EPOCH = datetime.fromtimestamp(0, UTC)  # a seal that does not say when (reading.py's too)
NO_SMTP = "No SMTP channel is configured (channels.smtp): there is no next hop to deliver it to."
WATCHED = (
    "This email was held from a mailbox nocontact watches (IMAP watch mode): put back, "
    "it would be held again, so it cannot be released here. Download the original from "
    "the evidence bundle to pass it on yourself."
)  # fmt: skip
NO_RECIPIENT = "The seal records no recipient to hand this email to the next hop for."
LOOPS = ("The SMTP channel's deliver address is the filter's own listen address: the "
         "email would be held again. Fix channels.smtp.deliver first.")  # fmt: skip
NO_SMS = "No SMS channel is configured (channels.sms): there is no phone to forward it to."
NOT_A_TEXT = "This item is not a text or an email, so no channel can carry it."
NO_OUTBOUND = ("No outbound: section is configured (the SMTP relay a reply by email leaves "
               "by): there is no way to send it.")  # fmt: skip
NO_SMS_REPLY = ("No SMS channel is configured (channels.sms): there is no number to send "
                "a text from.")  # fmt: skip


class CannotDeliver(NocontactError):
    """No channel can carry this item (rule 2); the message says why in one line."""


class NotDelivered(NocontactError):
    """The next hop or the provider did not take it now (rule 4); one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailRoute:
    destination: Destination
    hostname: str
    sender: str
    recipients: tuple[str, ...]
    options: tuple[str, ...]
    trace: bytes
    raw: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TextRoute:
    settings: SmsChannel
    to: str  # E.164: her phone (`forward_to`), or his number for a reply (rule 7)
    bodies: tuple[str, ...]
    media_kept: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundRoute:
    """A reply by email, through the `outbound:` SMTP relay (rule 7)."""

    settings: Outbound
    recipient: str
    raw: bytes


Route = EmailRoute | TextRoute | OutboundRoute


def plan(config: Config, metadata: SealedItem, payload: bytes) -> Route:
    """How the item (its seal's `metadata`, its original `payload`) would have reached her
    had it been allowed (rules 1 and 2)."""
    if metadata.channel is Channel.EMAIL:
        return _email(config, metadata, payload)
    return _text(config, payload)


def way_of(metadata: SealedItem) -> Way:
    """How a sealed item came (rule 7)."""
    origin = metadata.extras.get("imap")
    channel = metadata.channel.value if metadata.channel is not None else ""
    return Way(channel=channel, recipients=metadata.envelope.recipients,
               imap=origin if isinstance(origin, str) else None)  # fmt: skip


def _pulled(config: Config, origin: str, raw: bytes) -> EmailRoute:
    """Mail pulled from an IMAP account goes to that account's `deliver` (rule 1)."""
    imap = config.channels.imap
    name = origin.split("/", 1)[0]
    accounts = [a for a in imap.accounts if a.name == name] if imap is not None else []
    account = accounts[0] if accounts else None
    if account is None or account.mode != "pull" or account.deliver is None:
        raise CannotDeliver(WATCHED)
    destination = _destination(account.deliver)
    recipient = account.deliver_recipient or account.username
    return EmailRoute(destination=destination, hostname="nocontact.local", sender="",
                      recipients=(recipient,), options=(), trace=b"", raw=raw)  # fmt: skip


def _next_hop(config: Config, recipients: tuple[str, ...]) -> tuple[Destination, str]:
    """The SMTP channel's next hop and hostname, for mail to `recipients` (rule 2)."""
    smtp = config.channels.smtp
    if smtp is None:
        raise CannotDeliver(NO_SMTP)
    destination = _destination(smtp.deliver)
    if destination.scheme is not Scheme.MAILDIR and not recipients:
        raise CannotDeliver(NO_RECIPIENT)
    if destination.host and _same_place(destination, smtp.listen):
        raise CannotDeliver(LOOPS)
    return destination, smtp.hostname


def _email(config: Config, metadata: SealedItem, raw: bytes) -> EmailRoute:
    origin = metadata.extras.get("imap")
    if isinstance(origin, str):
        return _pulled(config, origin, raw)
    smtp = config.channels.smtp
    if smtp is None:
        raise CannotDeliver(NO_SMTP)
    recipients = metadata.envelope.recipients
    destination, _ = _next_hop(config, recipients)
    peer, helo = metadata.extras.get("peer"), metadata.extras.get("helo")
    trace = received_line(helo=helo if isinstance(helo, str) else "",
                          peer=peer if isinstance(peer, str) else "",
                          hostname=smtp.hostname,
                          received_at=metadata.received_at or _EPOCH)  # fmt: skip
    sender = metadata.envelope.sender
    return EmailRoute(destination=destination, hostname=smtp.hostname, sender=sender,
                      recipients=recipients, options=_options(raw, sender, recipients),
                      trace=trace, raw=raw)  # fmt: skip


def texts_her(metadata: SealedItem) -> bool:
    """Whether a summary of this item reaches her by text (rule 6), not by email."""
    return metadata.channel is not Channel.EMAIL


def plan_summary(
    config: Config, metadata: SealedItem, subject: str, text: str, now: datetime, *,
    reply_to: str | None = None,
) -> Route:  # fmt: skip
    """How a relay's `text` reaches her (rule 6): by the way the summarized item would
    have (its seal's `metadata`), as a new message; an email's answers go to `reply_to`
    (the relaying contact's address)."""
    return plan_note(config, way_of(metadata), subject, text, now, reply_to=reply_to)


def plan_note(
    config: Config, way: Way, subject: str, text: str, now: datetime, *,
    reply_to: str | None = None,
) -> Route:  # fmt: skip
    """How a relay's or a card's `text` reaches her (rules 6 and 8): the way the item
    came (`way`), as a new message; an email's answers go to `reply_to`, if given."""
    if way.channel != Channel.EMAIL.value:
        settings = config.channels.sms
        if settings is None:
            raise CannotDeliver(NO_SMS)
        return TextRoute(settings=settings, to=settings.forward_to, bodies=_texts(text),
                         media_kept=0)  # fmt: skip
    if way.imap is not None:
        held_as = _pulled(config, way.imap, b"")
    else:
        destination, hostname = _next_hop(config, way.recipients)
        held_as = EmailRoute(destination=destination, hostname=hostname, sender="",
                             recipients=way.recipients, options=(), trace=b"", raw=b"")  # fmt: skip
    hostname = held_as.hostname
    message = EmailMessage(policy=SMTP)
    message["From"] = f"nocontact <nocontact@{hostname}>"
    if held_as.recipients:
        message["To"] = ", ".join(held_as.recipients)
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = subject
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = make_msgid("relay", domain=hostname)
    message.set_content(text, cte="quoted-printable")
    raw = message.as_bytes()
    return EmailRoute(destination=held_as.destination, hostname=hostname, sender="",
                      recipients=held_as.recipients, options=_options(raw, "", held_as.recipients),
                      trace=b"", raw=raw)  # fmt: skip


def plan_reply(config: Config, addressee: Addressee, text: str, now: datetime) -> Route:
    """How a reply's `text` reaches him (rule 7): at `addressee` only."""
    if not addressee.by_email:
        settings = config.channels.sms
        if settings is None:
            raise CannotDeliver(NO_SMS_REPLY)
        return TextRoute(settings=settings, to=addressee.address, bodies=_texts(text),
                         media_kept=0)  # fmt: skip
    outbound = config.outbound
    if outbound is None:
        raise CannotDeliver(NO_OUTBOUND)
    domain = outbound.sender.rpartition("@")[2]
    message = EmailMessage(policy=SMTP)
    message["From"] = outbound.sender
    message["To"] = addressee.address
    message["Subject"] = SUBJECT
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = make_msgid("reply", domain=domain)
    message.set_content(text, cte="quoted-printable")
    return OutboundRoute(settings=outbound, recipient=addressee.address, raw=message.as_bytes())


def _texts(text: str) -> tuple[str, ...]:
    """`text` as texts within the provider's limit, numbered when it takes several."""
    room = MAX_BODY - len("(99/99) ")
    chunks = [text[i : i + room] for i in range(0, len(text), room)] or [""]
    if len(chunks) == 1:
        return tuple(chunks)
    return tuple(f"({n}/{len(chunks)}) {chunk}" for n, chunk in enumerate(chunks, 1))


def _destination(text: str) -> Destination:
    try:
        return parse_destination(text)
    except ValueError as error:
        raise CannotDeliver(str(error)) from None


def _same_place(destination: Destination, listen: str) -> bool:
    """Whether the next hop is the filter's own listening address (rule 2)."""
    try:
        host, port = parse_listen(listen)
    except ValueError:
        return False
    if port != destination.port:
        return False
    return host == destination.host or (_local(host) and _local(destination.host))


def _local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _options(raw: bytes, sender: str, recipients: tuple[str, ...]) -> tuple[str, ...]:
    """The MAIL options the sender would have used: 8BITMIME for 8-bit bytes, SMTPUTF8 for
    addresses beyond ASCII (hops.py passes on only those the next hop offers)."""
    options = []
    if not raw.isascii():
        options.append("BODY=8BITMIME")
    if not all(address.isascii() for address in (sender, *recipients)):
        options.append("SMTPUTF8")
    return tuple(options)


def _text(config: Config, payload: bytes) -> TextRoute:
    words = phone_words(payload)
    if words is None or words.kind != "text":
        raise CannotDeliver(NOT_A_TEXT)
    settings = config.channels.sms
    if settings is None:
        raise CannotDeliver(NO_SMS)
    sender = e164(words.sender, config.default_region) or words.sender
    return TextRoute(settings=settings, to=settings.forward_to,
                     bodies=tuple(forward_bodies(sender, words.text)),
                     media_kept=words.media)  # fmt: skip


async def deliver(route: Route) -> None:
    """Hand the item on; returns once it was taken (rule 4)."""
    if isinstance(route, EmailRoute):
        await _deliver_email(route)
    elif isinstance(route, OutboundRoute):
        await _send_outbound(route)
    else:
        await _forward_text(route)


async def _deliver_email(route: EmailRoute) -> None:
    hop = open_next_hop(route.destination, hostname=route.hostname)
    try:
        await hop.deliver(route.raw, route.sender, route.recipients, route.options,
                          trace=route.trace)  # fmt: skip
    except DeliveryRefused as refused:
        raise NotDelivered(
            f"the next hop refused it for good (it answered {refused.code})"
        ) from None
    except DeliveryDeferred as deferred:
        raise NotDelivered(f"the next hop did not take it: {deferred}") from None
    finally:
        await hop.aclose()


async def _forward_text(route: TextRoute) -> None:
    settings = route.settings
    try:
        token = auth_token(settings)
    except SmsStartError as error:
        raise NotDelivered(str(error)) from None
    provider = Provider(account_sid=settings.account_sid, auth_token=token,
                        api_base_url=settings.api_base_url)  # fmt: skip
    try:
        for body in route.bodies:
            await provider.send_text(to=route.to, sender=settings.number, body=body)
    except ProviderUnavailable:
        raise NotDelivered("the provider (Twilio) could not be reached or was busy") from None
    except ProviderRefused as refused:
        raise NotDelivered(str(refused)) from None
    finally:
        await provider.close()


async def _send_outbound(route: OutboundRoute) -> None:
    """Send through the outbound relay, logged in and encrypted as configured (rule 7)."""
    settings = route.settings
    password = None
    if settings.password_file is not None:
        try:
            password = Path(settings.password_file).read_text().strip()
        except OSError as error:
            raise NotDelivered(f"cannot read {settings.password_file}: {error.strerror}") from None
    try:
        trusted = ssl.create_default_context(cafile=settings.ca_file)
    except (ssl.SSLError, OSError, ValueError):
        raise NotDelivered(f"cannot read the relay's CA file {settings.ca_file}") from None
    try:
        await aiosmtplib.send(
            route.raw, sender=settings.sender, recipients=[route.recipient],
            hostname=settings.host, port=settings.port_or_default, username=settings.username,
            password=password, use_tls=settings.tls == "tls",
            start_tls=settings.tls == "starttls", timeout=_OUTBOUND_TIMEOUT,
            tls_context=trusted if settings.tls != "none" else None,
        )  # fmt: skip
    except aiosmtplib.SMTPAuthenticationError as refused:
        raise NotDelivered(
            f"the outbound SMTP relay refused the login (it answered {refused.code})"
        ) from None
    except aiosmtplib.SMTPRecipientsRefused:
        raise NotDelivered("the outbound SMTP relay refused his address") from None
    except aiosmtplib.SMTPResponseException as refused:
        raise NotDelivered(
            f"the outbound SMTP relay refused it (it answered {refused.code})"
        ) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        if _untrusted(error):
            raise NotDelivered(
                "the outbound SMTP relay's certificate is not trusted (its name, or its CA: "
                "outbound.ca_file)"
            ) from None
        raise NotDelivered("the outbound SMTP relay could not be reached") from None


def _untrusted(error: BaseException) -> bool:
    """Whether a certificate check failed somewhere in `error`'s chain."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
