"""WebAuthn challenges: random, single use, bound to one login attempt or session, short
lived and bounded in number."""

from __future__ import annotations

from proxy.portal.challenges import CHALLENGE_BYTES, LIFETIME, Challenges, for_login, for_session
from tests.portal_helpers import Clock


def test_a_challenge_is_taken_once_and_only_by_its_binding() -> None:
    """`take` gives the challenge issued for that binding, once; another binding (a login
    token used as a session's, or an empty one) gets nothing."""
    clock = Clock()
    challenges = Challenges(clock=clock)
    issued = challenges.issue(for_login("token-a"))
    assert len(issued) == CHALLENGE_BYTES
    assert challenges.take(for_session("token-a")) is None
    assert challenges.take(for_login("token-b")) is None
    assert challenges.take("") is None
    assert challenges.take(for_login("token-a")) == issued
    assert challenges.take(for_login("token-a")) is None
    assert for_login("") == for_session("") == ""


def test_challenges_are_random_and_a_new_one_replaces_the_old() -> None:
    """Two issues for one binding give different challenges; only the newer is live."""
    challenges = Challenges(clock=Clock())
    first = challenges.issue(for_login("t"))
    second = challenges.issue(for_login("t"))
    assert first != second
    assert len(challenges) == 1
    assert challenges.take(for_login("t")) == second


def test_a_challenge_expires() -> None:
    """Just before LIFETIME a challenge is live; at LIFETIME it is gone (and dropped)."""
    clock = Clock()
    challenges = Challenges(clock=clock)
    live = challenges.issue(for_login("a"))
    challenges.issue(for_login("b"))
    clock.advance(seconds=LIFETIME.total_seconds() - 1)
    assert challenges.take(for_login("a")) == live
    clock.advance(seconds=1)
    assert challenges.take(for_login("b")) is None
    assert len(challenges) == 0


def test_the_table_is_bounded_dropping_expired_then_oldest() -> None:
    """At capacity, issuing drops the expired first, then the oldest; the newest stay."""
    clock = Clock()
    challenges = Challenges(clock=clock, capacity=3)
    challenges.issue(for_login("old"))
    clock.advance(seconds=LIFETIME.total_seconds())
    kept = [challenges.issue(for_login(name)) for name in ("a", "b")]
    newest = [challenges.issue(for_login(name)) for name in ("c", "d")]
    assert len(challenges) == 3
    assert challenges.take(for_login("old")) is None
    assert challenges.take(for_login("a")) is None
    assert challenges.take(for_login("b")) == kept[1]
    assert [challenges.take(for_login(name)) for name in ("c", "d")] == newest
