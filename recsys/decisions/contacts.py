"""The contact history and the contact policy's two tests: channel caps and the cool-down."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from recsys.decisions.offer_set import ContactPolicy


class Contact(NamedTuple):
    offer_id: str
    channel: str
    sent_at: datetime


def channel_open(
    contacts: Sequence[Contact], channel: str | None, now: datetime, policy: ContactPolicy
) -> bool:
    """False when ``channel`` has had its cap of contacts within its window before ``now``."""
    cap = policy.caps.get(channel) if channel else None
    if cap is None:
        return True
    if not contacts:  # most customers: no date arithmetic
        return cap.max_contacts > 0
    since = now - timedelta(days=cap.window_days)
    sent = sum(1 for c in contacts if c.channel == channel and since < c.sent_at <= now)
    return sent < cap.max_contacts


def cooling_down(contacts: Sequence[Contact], now: datetime, policy: ContactPolicy) -> set[str]:
    """Offer ids sent (on any channel) within the cool-down before ``now``."""
    if not contacts:
        return set()
    since = now - timedelta(days=policy.cooldown_days)
    return {c.offer_id for c in contacts if since < c.sent_at <= now}
