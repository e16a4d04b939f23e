"""The meaning of each person's `court_order:` (issue 25).

Rules this module keeps:
1. `relay` names one contact of `contacts:` (compared as contact names are: case aside),
   and that contact has `alerts:` (transports they are told through): urgent child
   logistics must reach someone at once. One line each, at `relay`.
2. `order_file`, when given, is read relative to the config file's directory, must be a
   file that exists, and is made absolute (its SHA-256 is logged by `proxy.order_files`).
3. A child's name may be written once per order: a repeat is a slip, said in one line.
"""

from __future__ import annotations

import os

from proxy.config.files import absolute
from proxy.config.load import Document
from proxy.config.model import Config, Person
from proxy.errors import ConfigProblem


def check_orders(document: Document, config: Config) -> tuple[list[Person], list[ConfigProblem]]:
    """The people with their order files made absolute, and what is wrong (rules 1-3)."""
    contacts = {contact.name.casefold(): contact for contact in config.contacts}
    people: list[Person] = []
    problems: list[ConfigProblem] = []
    for index, person in enumerate(config.people):
        order = person.court_order
        if order is None:
            people.append(person)
            continue
        key = ("people", index, "court_order")
        relay = contacts.get(order.relay.casefold())
        if relay is None:
            problems.append(document.problem((*key, "relay"), f"no contact named "
                            f"{order.relay!r} in contacts: the relay is one of them"))  # fmt: skip
        elif relay.alerts is None:
            problems.append(document.problem((*key, "relay"), f"contact {relay.name!r} has no "
                            "alerts: give them alerts: (transports) so urgent child logistics "
                            "reach them at once"))  # fmt: skip
        seen: set[str] = set()
        for place, child in enumerate(order.children):
            if child.casefold() in seen:
                problems.append(document.problem((*key, "children", place),
                                                 "written twice in this order"))  # fmt: skip
            seen.add(child.casefold())
        if order.order_file is not None:
            path = absolute(document.directory, order.order_file)
            if not os.path.isfile(path):
                problems.append(document.problem((*key, "order_file"), f"no such file: {path}"))
            order = order.model_copy(update={"order_file": path})
        people.append(person.model_copy(update={"court_order": order}))
    return people, problems
