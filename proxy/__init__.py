"""nocontact: a home-server proxy that puts a survivor's no-contact rule into practice."""

from __future__ import annotations

__version__ = "0.1.0"
