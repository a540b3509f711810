"""Delivery stages: what may amend a delivery's plan between the recipients and the commit
(docs/decisions/0040), and the registry of the stages this server has.

Implementation notes
- A stage is an object with a `name` and `async run(message, plan)`; it reads the message (its parse,
  or its bytes through `message.source`, which it must leave at any position: the pipeline seeks before
  it reads) and the envelope and origin in the plan, and changes the plan: a recipient's target mailbox,
  flags, keywords, header fields, rejection or discarding, the remote recipients. It stores nothing:
  the pipeline commits the plan after the last stage, in one store transaction, so a stage that raises
  leaves nothing behind (the delivery fails as a whole, temporarily: SMTP 451).
- The order is the registry's, fixed by the server and not by the config: authentication results first
  (every later stage may read them), then DKIM signing (of submitted mail: a later stage may add header
  fields for one recipient, which the signature does not cover, but must not replace the message it
  signed; docs/decisions/0056), then spam scoring, then the user's filters (Sieve). The storage quota
  is not a stage: the pipeline applies it after the last one, always (it must see where the copies go;
  `postoffice.delivery.quota`, docs/decisions/0053). A stage that is switched off by its own settings is
  left out when the chain is built (`make` returns None), so an unused stage costs nothing per message.
- Messages the server writes itself (DSNs) have no plan: a stage that must handle them too (DKIM signing)
  implements `SignsGenerated`, and `DeliveryPipeline.sign_generated` runs it on them before they are queued.
- Adding a stage: its package (its code, its settings section if it has one) and one line in `STAGES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from postoffice.delivery.plan import DeliveryPlan, Message
    from postoffice.store import MailStore


class Stage(Protocol):
    """One step of the delivery pipeline (see the module notes)."""

    name: str

    async def run(self, message: Message, plan: DeliveryPlan) -> None: ...


@runtime_checkable
class SignsGenerated(Protocol):
    """A stage that also finishes the messages the server writes itself (DSNs), which are queued without a
    plan: DKIM signing (docs/decisions/0056). `sign_generated` returns the message to queue; it never
    raises (a message that cannot be finished goes as it was)."""

    async def sign_generated(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class StageRegistration:
    """A stage the server has: `make(config, store)` builds it from the configuration, None when its settings
    switch it off."""

    name: str
    make: Callable[[Any, MailStore], Stage | None]


def _authentication(config: Any, store: MailStore) -> Stage | None:
    from postoffice.mailauth.stage import make_stage  # SPF and DKIM libraries: loaded only by a server

    return make_stage(config, store)


def _report_intake(config: Any, store: MailStore) -> Stage | None:
    from postoffice.mailauth.report_intake import make_stage  # report formats: loaded only by a server

    return make_stage(config, store)


def _dkim_signing(config: Any, store: MailStore) -> Stage | None:
    from postoffice.mailauth.dkim_sign import make_stage  # dkimpy and cryptography: loaded only by a server

    return make_stage(config, store)


def _spam(config: Any, store: MailStore) -> Stage | None:
    from postoffice.spam.stage import make_stage  # the rspamd client: loaded only by a server

    return make_stage(config, store)


def _sieve(config: Any, store: MailStore) -> Stage | None:
    from postoffice.sieve.stage import make_stage  # the Sieve compiler: loaded only by a server

    return make_stage(config, store)


#: Every delivery stage, in the order they run (authentication results, DKIM signing, spam scoring, Sieve).
STAGES: tuple[StageRegistration, ...] = (
    StageRegistration("authentication", _authentication),
    StageRegistration("report-intake", _report_intake),
    StageRegistration("dkim-signing", _dkim_signing),
    StageRegistration("spam", _spam),
    StageRegistration("sieve", _sieve),
)


def build_stages(
    config: Any, store: MailStore, registry: Sequence[StageRegistration] = STAGES
) -> tuple[Stage, ...]:
    """The chain for this configuration: each registered stage its settings switch on, in registry order."""
    chain: list[Stage] = []
    for registration in registry:
        stage = registration.make(config, store)
        if stage is not None:
            chain.append(stage)
    return tuple(chain)
