"""Running under systemd: readiness and watchdog notices, and sockets systemd listens on.

`notify` speaks sd_notify (one datagram per notice to `NOTIFY_SOCKET`), `watchdog` pings
from the event loop, `activation` takes the listening sockets systemd passes
(`LISTEN_FDS`). Without systemd (no such variables) each of them does nothing.
"""
