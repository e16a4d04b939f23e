"""Turning what arrived on the wire into an `InboundMessage`: pure, total, and never raising.

Rules this package keeps:
1. Pure: bytes and values in, an `InboundMessage` out; the clock is an argument.
2. Total: any input, however broken, yields a message. Broken MIME falls back to the raw
   text, so a malformed message is still searched, and held if it is his.
3. Nothing is dropped that a reader could see: every text part, HTML rendered to text,
   forwarded messages and quoted replies all reach the rules.
"""

from __future__ import annotations

from proxy.normalize.email import normalize_email
from proxy.normalize.sms import normalize_sms

__all__ = ["normalize_email", "normalize_sms"]
