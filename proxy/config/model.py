"""The shape of nocontact's YAML config, as pydantic models.

Rules this module keeps:
1. The key names here are the user's interface: renaming one is a breaking change.
2. Every model forbids unknown keys and is strict about types, so a typo or a number where
   a string belongs is an error with a location, never a silent default.
3. Values are checked where they are declared (addresses, domains, numbers, recipients);
   facts that span entries (duplicates, key files) are checked in `proxy.config.meaning`.
4. Every field has a description: `nocontact schema` and config.example.yaml both rest on it.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from proxy.config import values


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    # Keys this section once took and refuses now: key -> why, said in the error line.
    retired_keys: ClassVar[dict[str, str]] = {}


EmailAddress = Annotated[
    str,
    AfterValidator(values.email_address),
    Field(description="An email address, name@domain", examples=["mark.smith@gmail.com"]),
]
Domain = Annotated[
    str,
    AfterValidator(values.domain),
    Field(description="A domain name; its subdomains are included", examples=["smith.example"]),
]
PhoneNumber = Annotated[
    str,
    AfterValidator(values.phone_number),
    Field(
        description="A phone number in any written form; read with default_region when it "
        "has no +country code, and stored as E.164",
        examples=["+1 (555) 010-0199"],
    ),
]
Name = Annotated[str, AfterValidator(values.name), Field(min_length=1)]
Identifier = Annotated[
    str,
    AfterValidator(values.identifier),
    Field(description="A short id: lowercase letters, digits, '-' and '_'"),
]
Region = Annotated[
    str,
    AfterValidator(values.region),
    Field(description="ISO 3166 two-letter country code", examples=["US", "GB"]),
]
AgeRecipient = Annotated[
    str,
    AfterValidator(values.age_recipient),
    Field(description="An age X25519 recipient, age1..."),
]
CustodyKey = Annotated[
    str,
    AfterValidator(values.custody_key),
    Field(description="An Ed25519 custody public key, ed25519:<base64>"),
]


CHECKPOINT_EVERY = 600
REPLICATED_CHECKPOINT_EVERY = 30  # + replicate.every + the upload: within 60 s


class Archive(_Section):
    """Where held items are sealed."""

    path: str = Field(
        min_length=1,
        description="Directory of the sealed archive; relative paths are read from the "
        "config file's directory",
    )
    checkpoint_every: int = Field(
        default=CHECKPOINT_EVERY, ge=30, le=3600,
        description="Seconds between the archive's signed checkpoints, on a fixed wall-clock "
        "cadence whatever arrives (one checkpoint entry each tick, idle or not); 600 by "
        "default, 30 when the config has `replicate:`, so entries reach the bucket within "
        "a minute of arriving",
    )  # fmt: skip


LocalTime = Annotated[
    str,
    Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="A local time, HH:MM (24 h)"),
]
TierName = Literal["urgent", "elevated", "digest"]


class AlertTransport(_Section):
    """Where alerts go: one apprise URL (email through a dedicated account, ntfy, Signal,
    Matrix, SMS ...), written here or kept in a file (it may hold a password)."""

    url: str | None = Field(
        default=None, min_length=1, description="An apprise URL, e.g. ntfy://ntfy.sh/a-topic"
    )
    url_file: str | None = Field(
        default=None, description="A file (0600) holding the apprise URL, instead of url"
    )

    @model_validator(mode="after")
    def _one_url(self) -> AlertTransport:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("give either url or url_file")
        return self


class DigestSchedule(_Section):
    """When the digest (counts since the last one, never content) goes out."""

    every: Literal["daily", "weekly", "off"] = Field(default="daily", description="How often")
    at: LocalTime = Field(default="08:00", description="The local time it goes out")
    weekday: Literal[
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
    ] = Field(default="monday", description="The day a weekly digest goes out")


class QuietHours(_Section):
    """Hours in which digests and elevated alerts wait (urgent ones never do)."""

    start: LocalTime = Field(description="When the quiet hours begin, e.g. 22:00")
    end: LocalTime = Field(description="When they end, e.g. 07:00 (the next day if earlier)")


class ExtraTerms(_Section):
    """Words and phrases of your own that raise an item's tier (matched whole, any case)."""

    urgent: list[Name] = Field(default_factory=list, description="Terms that make it urgent")
    elevated: list[Name] = Field(default_factory=list, description="Terms that make it elevated")


class Alerts(_Section):
    """Telling the trusted contacts, never the survivor, that something was held."""

    transports: dict[Identifier, AlertTransport] = Field(
        min_length=1, description="Named places alerts can go; contacts choose among them"
    )
    timezone: str = Field(
        default="UTC", min_length=1,
        description="The time zone of digest times and quiet hours, e.g. Europe/Berlin",
    )  # fmt: skip
    digest: DigestSchedule = Field(
        default_factory=DigestSchedule, description="When the digest goes out"
    )
    escalate_after: int = Field(
        default=30, ge=1, le=7 * 24 * 60,
        description="Minutes an urgent alert may go unacknowledged before it is sent again "
        "and to the next contact",
    )  # fmt: skip
    quiet_hours: QuietHours | None = Field(
        default=None, description="When digests and elevated alerts wait"
    )
    children: list[Name] = Field(
        default_factory=list, description="The children's names: a mention is elevated, a "
        "threat to them urgent",
    )  # fmt: skip
    places: list[Name] = Field(
        default_factory=list, description="Her home, work or school (street, name): a "
        "mention is elevated",
    )  # fmt: skip
    extra_terms: ExtraTerms = Field(
        default_factory=ExtraTerms, description="Your own terms that raise the tier"
    )


def _all_tiers() -> list[TierName]:
    return ["urgent", "elevated", "digest"]


class ContactAlerts(_Section):
    """How one contact hears of held items."""

    transports: list[Identifier] = Field(
        min_length=1, description="Names from alerts.transports to send to"
    )
    tiers: list[TierName] = Field(
        default_factory=_all_tiers,
        min_length=1, description="Which tiers this contact is sent",
    )  # fmt: skip


class Contact(_Section):
    """A trusted contact or lawyer: the only people who can open held items."""

    name: Name = Field(description="Who this is, as they sign custody records")
    role: Literal["lawyer", "contact"] = Field(description="lawyer or contact")
    email: EmailAddress | None = Field(default=None, description="How to reach them")
    phone: PhoneNumber | None = Field(default=None, description="How to reach them")
    age_recipient: AgeRecipient | None = Field(
        default=None, description="Their age public key (age1...); items are sealed to it"
    )
    age_recipient_file: str | None = Field(
        default=None, description="A file holding their age public key, instead of inline"
    )
    custody_key: CustodyKey | None = Field(
        default=None,
        description="Their custody public key (ed25519:..., printed by 'nocontact contact "
        "keygen' and 'contact pubkey'): the archive stores only custody records it verifies",
    )
    demo: bool = Field(
        default=False,
        description="For trying nocontact out only: if age_recipient_file does not exist, "
        "`nocontact run` makes a throwaway key pair beside it (the private key on this "
        "machine, so anyone here can open held items) and warns at every start",
    )
    alerts: ContactAlerts | None = Field(
        default=None, description="How they hear of held items (needs an alerts: section)"
    )
    portal: bool = Field(
        default=False,
        description="They use the web portal, logging in with their email: `nocontact portal "
        "invite` gives them a link to enroll, which writes their public key to "
        "age_recipient_file (and their custody key beside it, .custody); the running daemon "
        "picks both up within seconds. Until then that file may be missing, and items are "
        "sealed to the other contacts only",
    )

    @model_validator(mode="after")
    def _one_recipient(self) -> Contact:
        if (self.age_recipient is None) == (self.age_recipient_file is None):
            raise ValueError("give exactly one of age_recipient or age_recipient_file")
        if self.demo and self.age_recipient_file is None:
            raise ValueError("a demo contact needs age_recipient_file (where to make the key)")
        if self.portal and (self.age_recipient_file is None or self.email is None):
            raise ValueError(
                "a portal contact needs email (their login name) and age_recipient_file "
                "(where enrollment writes their public key)"
            )
        if self.portal and self.demo:
            raise ValueError("a contact is a demo contact or a portal contact, not both")
        return self


OrderChannel = Literal["email", "sms", "voice"]
OrderTopic = Literal["children"]  # proxy.alerts.order_mark.ALLOWED_TOPICS


def _children_topic() -> list[OrderTopic]:
    return ["children"]


class CourtOrder(_Section):
    """A court order that allows him contact about the children: everything from him is
    still held and sealed; child logistics are told to the relay contact, urgent ones at
    once (docs/court-orders.md)."""

    children: list[Name] = Field(
        min_length=1, description="The children's names and nicknames, as he writes them"
    )
    topics: list[OrderTopic] = Field(
        default_factory=_children_topic, min_length=1,
        description="What the order allows him to write about (children)",
    )  # fmt: skip
    channels: list[OrderChannel] = Field(
        min_length=1, description="The channels the order allows him: email, sms, voice"
    )
    relay: Name = Field(
        description="The contact (a name from contacts:, with alerts:) who is told of child "
        "logistics, urgent ones at once, and relays them to you in their own words"
    )
    emergency_terms: list[Name] = Field(
        default_factory=list,
        description="Your own emergency words, besides the built-in ones (hospital, police, "
        "injured, missing ... in English, Spanish, French, German and Portuguese)",
    )
    relay_within: int = Field(
        default=60, ge=1, le=24 * 60,
        description="Minutes an urgent logistics item may wait for the relay contact's "
        "summary before the automatic card (or the next contact)",
    )  # fmt: skip
    auto_card: bool = Field(
        default=False,
        description="Past relay_within with no relay, send you a card of facts taken from "
        "the message (child, date, time, place, topic), never his words; off: the alert "
        "goes to the next contact instead",
    )
    order_file: str | None = Field(
        default=None,
        description="A copy of the order (PDF ...); its SHA-256 is logged when the profile "
        "is first loaded or changed",
    )


class Person(_Section):
    """Someone the survivor has cut off. Anything from them, or about them, is held."""

    id: Identifier = Field(description="A short id used in rule ids, e.g. 'mark'")
    name: Name = Field(description="Their name; mentions of it in others' messages are held")
    aliases: list[Name] = Field(
        default_factory=list, description="Nicknames and other names he goes by (mentions too)"
    )
    emails: list[EmailAddress] = Field(
        default_factory=list,
        description="His addresses; case, +tags and Gmail dots are ignored",
    )
    domains: list[Domain] = Field(
        default_factory=list, description="Domains all of whose senders are him"
    )
    phones: list[PhoneNumber] = Field(default_factory=list, description="His phone numbers")
    display_names: list[Name] = Field(
        default_factory=list,
        description="Sender names he uses; look-alike letters and case don't hide them",
    )
    court_order: CourtOrder | None = Field(
        default=None, description="A court order allowing him contact about the children"
    )


class Intermediary(_Section):
    """Someone who carries messages for a blocked person; everything from them is held."""

    id: Identifier = Field(description="A short id used in rule ids")
    name: Name | None = Field(default=None, description="Who they are, for your own notes")
    emails: list[EmailAddress] = Field(default_factory=list, description="Their addresses")
    phones: list[PhoneNumber] = Field(default_factory=list, description="Their phone numbers")

    @model_validator(mode="after")
    def _has_identity(self) -> Intermediary:
        if not self.emails and not self.phones:
            raise ValueError("an intermediary needs at least one email or phone")
        return self


class Allow(_Section):
    """Senders who always get through, even when they write about him (never if it is him)."""

    emails: list[EmailAddress] = Field(default_factory=list, description="Allowed addresses")
    domains: list[Domain] = Field(
        default_factory=list, description="Allowed domains, subdomains included"
    )
    phones: list[PhoneNumber] = Field(default_factory=list, description="Allowed numbers")


class SmtpChannel(_Section):
    """The SMTP filter: mail comes in here and leaves to `deliver`, unless it is held."""

    listen: str = Field(
        default="127.0.0.1:2525",
        description="host:port to accept mail on (e.g. Postfix's content_filter target)",
    )
    deliver: str = Field(
        default="maildir:./var/mail",
        description="Where allowed mail goes: smtp://host:port, lmtp://host:port, "
        "lmtp:/path/to/socket, or maildir:/path (relative paths from this file)",
    )
    max_message_bytes: int = Field(
        default=64 << 20, ge=1024, description="Larger messages are refused with 552 at DATA"
    )
    hostname: str = Field(
        default="nocontact.local",
        min_length=1,
        description="This server's name, in the greeting and the Received header",
    )
    tls_cert_file: str | None = Field(
        default=None, description="PEM certificate chain; with tls_key_file, offers STARTTLS"
    )
    tls_key_file: str | None = Field(default=None, description="PEM private key for STARTTLS")
    max_connections: int = Field(
        default=500,
        ge=1,
        description="Sessions open at once; one more is told 421 (try later) and closed",
    )
    max_connections_per_client: int = Field(
        default=50,
        ge=1,
        description="Sessions open at once from one client address (at most "
        "max_connections); one more is told 421 (try later) and closed",
    )
    idle_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A client silent this long (between commands or inside DATA) is "
        "disconnected (RFC 5321 4.5.3.2: at least 300)",
    )
    reply_after_ms: float = Field(
        default=10.0,
        ge=0,
        le=10_000,
        description="The reply to DATA comes no sooner than this after the data ended, "
        "held or delivered: sealing and relaying take different times, and the time of "
        "the reply must not tell a sender which his message met",
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> SmtpChannel:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("give both tls_cert_file and tls_key_file, or neither")
        return self

    @model_validator(mode="after")
    def _per_client_within_total(self) -> SmtpChannel:
        if self.max_connections_per_client > self.max_connections:
            raise ValueError("max_connections_per_client must be at most max_connections")
        return self


class ImapAccount(_Section):
    """A hosted mailbox (Gmail, Fastmail, Outlook...) that nocontact watches."""

    retired_keys: ClassVar[dict[str, str]] = {
        "move_held_to": "no longer a setting: held mail never stays in the survivor's "
        "mailbox, not even in a folder of its own; it is sealed, then removed from the "
        "mailbox entirely (see held_removal)",
    }

    name: Identifier = Field(description="A short name for this account, e.g. 'gmail'")
    host: str = Field(min_length=1, description="The IMAP server, e.g. imap.gmail.com")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Default: 993 for implicit TLS, else 143"
    )
    tls: Literal["implicit", "starttls", "none"] = Field(
        default="implicit",
        description="implicit (IMAPS), starttls, or none (loopback test servers only)",
    )
    ca_file: str | None = Field(
        default=None, description="A CA bundle to verify a self-hosted server's certificate"
    )
    username: str = Field(min_length=1, description="The login name")
    password_file: str | None = Field(
        default=None, description="A file holding the password (or an app password)"
    )
    oauth2_command: list[str] | None = Field(
        default=None,
        description="Instead of a password: a command (program and arguments) that prints "
        "an OAuth2 access token, used with XOAUTH2 (Gmail, Outlook)",
    )
    folders: list[str] | None = Field(
        default=None,
        description="Folders to watch; default INBOX and the server's Junk/Spam folder",
    )
    held_removal: Literal["auto", "expunge", "trash"] = Field(
        default="auto",
        description="How held mail leaves the mailbox once sealed. expunge: flag deleted "
        "and expunge it where it is. trash: move it to the server's Trash folder (special-"
        "use \\Trash) and expunge it there, for servers (Gmail) where an expunge from INBOX "
        "only takes a label off and the message stays in All Mail. auto: trash when the "
        "server is Gmail-like (it advertises X-GM-EXT-1), else expunge",
    )
    idle_seconds: float = Field(
        default=29 * 60, gt=0, le=29 * 60,
        description="Re-issue IDLE at least this often (servers drop IDLE after 30 min)",
    )  # fmt: skip
    poll_seconds: float | None = Field(
        default=None, gt=0, le=60,
        description="Low latency for self-hosted servers: instead of IDLE (which servers "
        "report ~0.5 s late), look for new mail this often with one UID SEARCH round trip "
        "per folder (0.05 = 20 requests/s per folder)",
    )  # fmt: skip
    mode: Literal["watch", "pull"] = Field(
        default="watch",
        description="watch: filter the mailbox in place; pull: move everything out of it, "
        "allowed mail to `deliver` (the mailbox your clients read), held mail sealed",
    )
    deliver: str | None = Field(
        default=None,
        description="pull mode: where allowed mail goes (smtp://, lmtp://, lmtp:/socket, "
        "maildir:/path, as for channels.smtp.deliver)",
    )
    deliver_recipient: str | None = Field(
        default=None,
        description="pull mode: the local recipient for an smtp:// or lmtp:// next hop "
        "(default: username)",
    )
    move_pulled_to: str | None = Field(
        default=None,
        description="pull mode: move delivered mail to this upstream folder instead of "
        "deleting it upstream",
    )

    @model_validator(mode="after")
    def _pull_needs_deliver(self) -> ImapAccount:
        if (self.password_file is None) == (self.oauth2_command is None):
            raise ValueError("give exactly one of password_file or oauth2_command")
        if self.mode == "pull" and self.deliver is None:
            raise ValueError("pull mode needs deliver: where allowed mail goes")
        if self.mode == "watch" and (self.deliver or self.move_pulled_to or self.deliver_recipient):
            raise ValueError("deliver, deliver_recipient, move_pulled_to are for pull mode only")
        return self


class ImapChannel(_Section):
    """The IMAP watcher: held mail is sealed, then removed from the watched folders."""

    accounts: list[ImapAccount] = Field(min_length=1, description="The mailboxes to watch")
    state_dir: str = Field(
        default="./var/imap",
        description="Where the last handled message of each folder is remembered",
    )


WebUrl = Annotated[str, AfterValidator(values.web_url)]
PortalUrl = Annotated[str, AfterValidator(values.portal_url)]
ProxyNetwork = Annotated[
    str,
    AfterValidator(values.network),
    Field(description="An IP address or network (CIDR)", examples=["127.0.0.1", "10.0.0.0/8"]),
]
GREETING = (
    "Hello, you have reached my voicemail. I can't take your call right now. "
    "Please leave a message after the tone."
)


class SmsChannel(_Section):
    """Texts and calls to the survivor's public Twilio number: held ones sealed, the rest
    forwarded to their real phone."""

    listen: str = Field(
        default="127.0.0.1:8088",
        description="host:port where Twilio's webhooks arrive (behind your HTTPS proxy)",
    )
    public_url: WebUrl = Field(
        description="The webhook base URL exactly as configured at Twilio, e.g. "
        "https://home.example/twilio; signatures are checked against it. Point the number's "
        "messaging webhook at <public_url>/sms and its voice webhook at <public_url>/voice",
        examples=["https://home.example/twilio"],
    )
    account_sid: Annotated[str, AfterValidator(values.account_sid)] = Field(
        description="The Twilio account SID (AC...)"
    )
    auth_token_file: str | None = Field(
        default=None,
        description="A file holding the account's auth token; default: the environment "
        "variable TWILIO_AUTH_TOKEN",
    )
    number: PhoneNumber = Field(description="The public Twilio number people text and call")
    forward_to: PhoneNumber = Field(
        description="The survivor's real phone: allowed texts and calls go there"
    )
    voicemail_greeting: str = Field(
        default=GREETING,
        min_length=1,
        max_length=1000,
        description="What a caller hears before the tone when no one answers: every held "
        "caller, and an allowed one the survivor does not pick up (say nothing about blocking)",
    )
    ring_tone: Annotated[str, AfterValidator(values.ring_tone)] = Field(
        default="us",
        description="The country whose ringing callers hear before the greeting (Twilio's "
        "ringTone code: us, uk, nz, de, fr, it, nl, no or pl); held callers hear the same tone",
        examples=["us", "uk"],
    )
    redact_at_provider: bool = Field(
        default=True,
        description="After sealing, delete held media and recordings and blank held texts "
        "in Twilio's logs, so nothing of them stays in the Twilio console",
    )
    reconcile_every: float = Field(
        default=300.0,
        gt=0,
        strict=False,
        description="Seconds between passes over Twilio's message and call logs that pick "
        "up anything a webhook missed (daemon down, network cut)",
    )
    api_base_url: WebUrl = Field(
        default="https://api.twilio.com",
        description="Twilio's REST API base URL (a regional edge, or a local fake in tests)",
    )
    state_dir: str = Field(
        default="./var/sms",
        description="Where handled message ids and the forwarding outbox are kept",
    )


class Channels(_Section):
    """The ways messages come in. Each channel adds its own section."""

    smtp: SmtpChannel | None = Field(default=None, description="The SMTP filter channel")
    imap: ImapChannel | None = Field(default=None, description="The IMAP watcher channel")
    sms: SmsChannel | None = Field(default=None, description="The SMS and voice channel (Twilio)")


class Outbound(_Section):
    """Where a contact's reply to him by email leaves from (docs/court-orders.md,
    "Replies"): an SMTP relay, such as a mail provider's submission server. Replies to
    his texts, calls and voicemails go from channels.sms.number instead."""

    host: str = Field(min_length=1, description="The SMTP relay, e.g. smtp.fastmail.com")
    port: int | None = Field(
        default=None, ge=1, le=65535,
        description="Default: 587 for starttls, 465 for tls, 25 for none",
    )  # fmt: skip
    tls: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls (submission, port 587), tls (implicit TLS, port 465), or "
        "none (a relay on this machine only: the password would go in the clear)",
    )
    username: str | None = Field(
        default=None, min_length=1, description="The login name, with password_file"
    )
    password_file: str | None = Field(
        default=None, description="A file (0600) holding the password (or an app password)"
    )
    sender: EmailAddress = Field(
        alias="from",
        description="The address replies come from (and bounces return to): an address of "
        "the contacts' own, never hers",
    )
    ca_file: str | None = Field(
        default=None,
        description="A PEM file of the certificate authorities that sign the relay's "
        "certificate, for a relay with a private CA; default: the system's",
    )

    @model_validator(mode="after")
    def _login_pair(self) -> Outbound:
        if (self.username is None) != (self.password_file is None):
            raise ValueError("give both username and password_file, or neither")
        return self

    @property
    def port_or_default(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.tls]


class Portal(_Section):
    """The web portal where contacts marked `portal: true` enroll and log in."""

    listen: str = Field(
        default="127.0.0.1:8089",
        description="host:port the portal listens on (behind your HTTPS proxy, or with TLS)",
    )
    public_url: PortalUrl = Field(
        description="The portal's address as contacts reach it, e.g. https://home.example/"
        "portal; invitation links are <public_url>/enroll/<token>, and the portal serves "
        "its pages under the URL's path (a proxy passes the path on unchanged)",
        examples=["https://home.example/portal"],
    )
    state_dir: str = Field(
        default="./var/portal",
        description="Where invitations, accounts and the contacts' passphrase-wrapped keys "
        "are kept (files 0600, directories 0700)",
    )
    tls_cert_file: str | None = Field(
        default=None, description="PEM certificate chain; with tls_key_file, serves HTTPS"
    )
    tls_key_file: str | None = Field(default=None, description="PEM private key for HTTPS")
    trusted_proxies: list[ProxyNetwork] = Field(
        default_factory=list, max_length=64,
        description="Reverse proxies (addresses or networks) whose X-Forwarded-For the portal "
        "believes, to tell clients apart for the login throttle; empty: none, the peer's "
        "own address counts",
    )  # fmt: skip
    session_idle_minutes: int = Field(
        default=15, ge=1, le=24 * 60,
        description="A session unused this long ends, and the key unwrapped for it is dropped",
    )  # fmt: skip
    session_max_hours: int = Field(
        default=8, ge=1, le=24 * 7,
        description="A session ends this long after login, however busy",
    )  # fmt: skip

    @model_validator(mode="after")
    def _tls_pair(self) -> Portal:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("give both tls_cert_file and tls_key_file, or neither")
        if self.session_idle_minutes > self.session_max_hours * 60:
            raise ValueError("session_idle_minutes must be at most session_max_hours")
        return self


class Witness(_Section):
    """A C2SP tlog-witness that cosigns the archive's checkpoints (docs/witnesses.md)."""

    url: Annotated[str, AfterValidator(values.web_url)] = Field(
        description="Its submission prefix; checkpoints are POSTed to <url>/add-checkpoint",
        examples=["https://witness.advocacy.example"],
    )
    key: Annotated[str, AfterValidator(values.witness_key)] = Field(
        description="Its verifier key, name+keyid+base64, as `nocontact witness keygen` "
        "prints it; cosignatures by any other key are dropped"
    )


class Replicate(_Section):
    """The off-site replica of the sealed log: a C2SP tlog-tiles log in an S3 bucket with
    Object Lock, run by someone other than this server's owner (docs/replication.md).
    `nocontact replicate -c FILE` writes it, as its own process."""

    endpoint: Annotated[str, AfterValidator(values.web_url)] | None = Field(
        default=None,
        description="The S3 endpoint, e.g. https://s3.eu-central-1.wasabisys.com; absent: "
        "AWS S3 itself (http only for an endpoint on this machine)",
        examples=["https://s3.provider.example"],
    )
    bucket: Annotated[str, AfterValidator(values.bucket_name)] = Field(
        description="The bucket, made with Object Lock enabled (3 to 63 lowercase letters, "
        "digits, '.' and '-')"
    )
    prefix: Annotated[str, AfterValidator(values.key_prefix)] = Field(
        default="",
        description="Where the log's objects go inside the bucket, e.g. nocontact/ (one "
        "bucket can hold several logs); empty: the bucket's top",
    )
    credentials_file: str = Field(
        description="A file (0600) in the AWS credentials format: a [default] section with "
        "aws_access_key_id and aws_secret_access_key; a key that may write this bucket only"
    )
    region: str = Field(default="us-east-1", min_length=1, description="The bucket's region")
    retention_days: int = Field(
        ge=1, le=36500,
        description="Every object is locked (Object Lock COMPLIANCE) this many days from "
        "when it is written: longer than any proceedings may last",
    )  # fmt: skip
    every: int = Field(
        default=10, ge=1, le=60,
        description="Seconds between passes: a signed checkpoint reaches the bucket within "
        "this long (plus the upload)",
    )  # fmt: skip
    state_file: str = Field(
        default="./var/replica.json",
        description="Where the replicator notes the size it last replicated and when the "
        "bucket was last up to date (0600), for the lag",
    )


class Config(_Section):
    """A whole nocontact config file."""

    archive: Archive = Field(description="Where held items are sealed")
    contacts: list[Contact] = Field(
        min_length=1, description="Who can open held items; at least one"
    )
    people: list[Person] = Field(
        min_length=1, description="The people the survivor has cut off; at least one"
    )
    intermediaries: list[Intermediary] = Field(
        default_factory=list, description="People who carry messages for them"
    )
    allow: Allow = Field(default_factory=Allow, description="Senders who always get through")
    no_contact_since: dt.date | None = Field(
        default=None,
        strict=False,
        description="The day no contact began (YYYY-MM-DD); reports count from it",
    )
    default_region: Region | None = Field(
        default=None,
        description="Two-letter country code for phone numbers written without +country",
    )
    channels: Channels = Field(default_factory=Channels, description="Inbound channels")
    portal: Portal | None = Field(
        default=None, description="The web portal for contacts marked portal: true"
    )
    alerts: Alerts | None = Field(
        default=None, description="Alerts and digests to the contacts, never to her"
    )
    outbound: Outbound | None = Field(
        default=None,
        description="Where a contact's reply to him by email leaves from (an SMTP relay)",
    )
    witnesses: list[Witness] = Field(
        default_factory=list, max_length=32,
        description="Witnesses that cosign each checkpoint the archive signs; run by a "
        "contact or an advocacy organisation, never on this server",
    )  # fmt: skip
    replicate: Replicate | None = Field(
        default=None,
        description="The off-site replica of the sealed log (S3 with Object Lock), written "
        "by `nocontact replicate`",
    )

    @model_validator(mode="before")
    @classmethod
    def _replicated_cadence(cls, data: object) -> object:
        """A replicated archive signs every 30 s unless its config says otherwise: an entry
        reaches the bucket at its first signed checkpoint (docs/replication.md, "Lag")."""
        if not isinstance(data, dict) or data.get("replicate") is None:
            return data
        archive = data.get("archive")
        if not isinstance(archive, dict) or "checkpoint_every" in archive:
            return data
        return {**data, "archive": {**archive, "checkpoint_every": REPLICATED_CHECKPOINT_EVERY}}
