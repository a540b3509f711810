"""Storage quotas in the delivery pipeline (docs/decisions/0053): which copies a delivery may store, and the
early answer at RCPT.

Implementation notes
- The rule is the store's (`postoffice.store.quota_refusal`, also applied inside the store's APPEND and COPY
  transactions): a copy is refused when it would take its account over its quota (`Account.quota`, octets;
  0 is no limit): temporarily, 452 4.2.2, the sender tries again and the account's owner can make room; and
  permanently, 552 5.2.2, when the message alone is larger than the whole quota, so it will never fit (RFC
  3463 section 3.3 X.2.2 "mailbox full"; RFC 5321 section 4.2.3: 452 "insufficient system storage", 552
  "exceeded storage allocation").
- `apply_quotas` is the pipeline's last step, after every stage (it must see which copies are kept and the
  header fields they got, which count): a refused copy is rejected in the plan like a stage's rejection, so
  the pipeline's rules for refusals apply (a temporary one defers the whole delivery; permanent ones among
  accepted copies are reported in a DSN). It is not a registered stage: quotas are account data, not a
  setting, and no pipeline may be built without it.
- `recipient_room` answers at RCPT (with the SIZE the client declared, RFC 1870), so that a full mailbox is
  refused for its recipient alone, before the data, and the other recipients get the message now.
- The server's own DSNs to local users (origin "queue", the null sender) are always stored: they are how a
  user learns that their mail failed, a refusal would lose them (a DSN is never answered by a DSN), and they
  are small (at most DSN_FULL_LIMIT of the original).
- Usage is read before the commit (`MailStore.quota_usage`), so deliveries running at the same time may each
  take an account over its quota by one message. Accounts without a quota cost no I/O.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from postoffice.delivery.plan import Refusal
from postoffice.store import OverQuota

if TYPE_CHECKING:
    from postoffice.delivery.plan import DeliveryPlan, Message, Recipient, RecipientPlan, Rewrite
    from postoffice.store import MailStore

log = logging.getLogger("postoffice.delivery")

#: `Refusal.reason` of a quota refusal (JMAP's SetError "overQuota", RFC 8620 section 5.3).
OVER_QUOTA = "overQuota"

MAILBOX_FULL = Refusal(452, "4.2.2", "Mailbox full: the recipient is over its storage quota", OVER_QUOTA)
TOO_LARGE_FOR_MAILBOX = Refusal(
    552, "5.2.2", "Mailbox full: the message is larger than the recipient's storage quota", OVER_QUOTA
)


def quota_reply(refusal: OverQuota) -> Refusal:
    """The SMTP answer to a store's quota refusal."""
    return TOO_LARGE_FOR_MAILBOX if refusal.permanent else MAILBOX_FULL


def exempt(plan: DeliveryPlan) -> bool:
    """The server's own DSNs to its users (module notes)."""
    return plan.origin.kind == "queue" and not plan.envelope.sender


async def apply_quotas(store: MailStore, message: Message, plan: DeliveryPlan) -> None:
    """Reject in `plan` every kept copy that its account's quota refuses (module notes)."""
    if exempt(plan):
        return
    kept = [r for r in plan.recipients if r.action == "deliver"]
    if not kept:
        return
    usage = await store.quota_usage(r.account_id for r in kept)
    if not usage:
        return
    for recipient in kept:
        use = usage.get(recipient.account_id)
        if use is None:
            continue
        refusal = use.refusal(_octets(message.parsed.size, recipient, plan))
        if refusal is not None:
            log.info(
                "delivery id=%s to=<%s> account_id=%d over quota: %s",
                plan.origin.id or "-",
                recipient.addresses[0],
                recipient.account_id,
                refusal,
            )
            recipient.reject(quota_reply(refusal))


def _octets(size: int, recipient: RecipientPlan, plan: DeliveryPlan) -> int:
    """What the recipient's copies add: each copy with its own header when a Sieve script edited it (a
    `Rewrite` takes the place of the message's header and the fields added for it), and the copies of what
    its script sent (:fcc)."""

    def one(rewrite: Rewrite | None, default: int) -> int:
        return default if rewrite is None else size - rewrite.replaces + len(rewrite.head)

    first = one(recipient.rewrite, size + len(recipient.prefix))
    total = first + sum(one(t.rewrite, first) for t in recipient.also)
    return total + sum(len(c.data) for c in plan.sent_copies if c.account_id == recipient.account_id)


async def recipient_room(store: MailStore, recipient: Recipient, size: int) -> Refusal | None:
    """At RCPT, for a message of about `size` octets (the declared SIZE; 0 when unknown): the refusal when
    an account the recipient reaches is full (the recipient waits as a whole, so nobody behind an alias gets
    the message twice), or when every one of them refuses it as too large; None otherwise (a permanent
    refusal of some accounts among others is decided at the end of data and reported in a DSN)."""
    if recipient.remote:
        return None
    usage = await store.quota_usage(recipient.account_ids)
    if not usage:
        return None
    refusals = []
    for account_id in recipient.account_ids:
        use = usage.get(account_id)
        refusal = use.refusal(max(size, 1)) if use is not None else None
        if refusal is not None and not refusal.permanent:
            return MAILBOX_FULL
        refusals.append(refusal)
    if all(refusal is not None for refusal in refusals):
        return TOO_LARGE_FOR_MAILBOX
    return None
