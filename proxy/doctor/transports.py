"""Whether each alert transport's URL is one apprise can send to; and, asked, a test alert.

Rules this module keeps:
1. A transport's URL is read as the alert service reads it (`url`, or `url_file`) and
   parsed by apprise; nothing is sent.
2. Only with `--send-test-alert` is anything sent: to every transport, the title and body
   `TEST_ALERT`, which says nothing of any item and carries no checkpoint. The URL is
   never printed (it may hold a password): the transport's name is.
"""

from __future__ import annotations

from proxy.alerts.send import parsed, send, transport_url
from proxy.config import Config
from proxy.doctor.findings import Finding, fail, ok

TEST_ALERT = "nocontact test alert"


def check_transports(config: Config, *, send_test_alert: bool) -> list[Finding]:
    if config.alerts is None:
        return []
    found = []
    for name, transport in config.alerts.transports.items():
        what = f"alert transport {name}"
        url = transport_url(transport)
        if url is None:
            found.append(fail(what, "cannot read its url_file"))
        elif parsed(url) is None:
            found.append(fail(what, "apprise cannot send to its URL"))
        else:
            found.append(ok(f"{what} parses"))
            if send_test_alert:
                taken = send(url, TEST_ALERT, TEST_ALERT)
                found.append(
                    ok(f"test alert sent through {name}") if taken
                    else fail(f"test alert through {name}", "the transport did not take it")
                )  # fmt: skip
    return found
