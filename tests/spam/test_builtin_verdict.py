"""The built-in verdict (docs/decisions/0089): the score from our Authentication-Results and the DNSBL
listings, which symbols count and which do not, and what the stage does with it: Junk from `junk_score` on or
for a listing under the junk action, never a refusal, the X-Spam-* fields as rspamd's; and the stage built
only when it has something to judge by."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from pathlib import Path

import pytest

from postoffice.config import Config, ServerConfig
from postoffice.delivery.plan import Envelope, Origin, Recipient, initial_plan
from postoffice.mailauth.results import read_results, results_by_method
from postoffice.mailauth.settings import MailAuthConfig
from postoffice.message import parse_message
from postoffice.spam.builtin import builtin_verdict, dnsbl_symbol
from postoffice.spam.settings import SpamConfig
from postoffice.spam.stage import SpamStage, make_stage
from tests.delivery.harness import as_message, message


def results(*methods: str) -> str:
    return "mx.example.test;\r\n\t" + ";\r\n\t".join(methods)


CLEAN = results(
    "iprev=pass (mail.sender.example) policy.iprev=192.0.2.1",
    "spf=pass smtp.mailfrom=sender.example",
    "spf=none smtp.helo=mail.sender.example",
    "dkim=pass header.d=sender.example header.s=s1",
    "dmarc=pass header.from=sender.example",
)
FORGED = results(
    "iprev=fail policy.iprev=192.0.2.66",
    "spf=fail (not allowed; fail) smtp.mailfrom=bank.example",
    "dkim=fail (body hash did not verify) header.d=bank.example",
    "dmarc=fail header.from=bank.example",
)


def test_mail_that_authenticates_scores_nothing() -> None:
    verdict = builtin_verdict(CLEAN, ())
    assert (verdict.score, verdict.symbols, verdict.action) == (0.0, {}, "builtin")


def test_each_failure_has_its_weight() -> None:
    verdict = builtin_verdict(FORGED, ("zen.spamhaus.org", "b.barracudacentral.org"))
    assert verdict.symbols == {
        "R_SPF_FAIL": 4.0,
        "R_DKIM_REJECT": 2.0,
        "DMARC_FAIL": 2.0,
        "IPREV_FAIL": 1.0,
        "RBL_ZEN_SPAMHAUS_ORG": 3.0,
        "RBL_B_BARRACUDACENTRAL_ORG": 3.0,
    }
    assert verdict.score == 15.0


def test_softfail_counts_less_and_only_the_mail_from_identity_counts() -> None:
    soft = builtin_verdict(
        results("spf=softfail smtp.mailfrom=a.example", "spf=fail smtp.helo=h.example"), ()
    )
    assert soft.symbols == {"R_SPF_SOFTFAIL": 1.5}
    helo_only = builtin_verdict(
        results("spf=none smtp.mailfrom=a.example", "spf=fail smtp.helo=h.example"), ()
    )
    assert helo_only.symbols == {}


def test_a_failing_signature_beside_a_passing_one_counts_nothing() -> None:
    both = results("dkim=fail header.d=list.example", "dkim=pass header.d=sender.example")
    assert builtin_verdict(both, ()).symbols == {}
    broken = results("dkim=permerror (no key) header.d=x.example")
    assert builtin_verdict(broken, ()).symbols == {"R_DKIM_REJECT": 2.0}


def test_temporary_errors_and_no_results_count_nothing() -> None:
    shaky = results(
        "iprev=temperror", "spf=temperror smtp.mailfrom=a.example", "dmarc=temperror header.from=a"
    )
    assert builtin_verdict(shaky, ()).score == 0.0
    assert builtin_verdict("", ()).score == 0.0


def test_every_result_of_a_method_is_read_and_the_first_is_still_the_one_read_results_gives() -> None:
    value = results(
        "dkim=fail (x; y) header.d=a.example", "dkim=pass header.d=b.example", "spf=pass", "spf=fail"
    )
    assert results_by_method(value) == {"dkim": ["fail", "pass"], "spf": ["pass", "fail"]}
    assert read_results(value) == {"dkim": "fail", "spf": "pass"}


def test_a_zone_becomes_an_rspamd_like_symbol() -> None:
    assert dnsbl_symbol("bl.spam-cop.net") == "RBL_BL_SPAM_COP_NET"


# -- the stage ---------------------------------------------------------------------------------------------
def run_stage(settings: SpamConfig, authentication: str, listings: tuple[str, ...] = ()) -> list[object]:
    raw = message("offer", sender="x@bank.example")
    origin = Origin("mx", "192.0.2.66", "mail.bank.example", dnsbl=listings)
    plan = initial_plan(Envelope("x@bank.example"), origin, [Recipient("demo@example.test", (1,))])
    plan.authentication_results = authentication
    asyncio.run(SpamStage(settings, None, "mx.example.test").run(as_message(raw), plan))
    assert plan.spam_score is not None
    assert plan.spam_score[1] == settings.junk_score  # Sieve's spamtest reads the score (decision 0090)
    (copy,) = plan.recipients
    if settings.add_headers:
        assert f"X-Spam-Score: {plan.spam_score[0]:.2f}\r\n".encode() in copy.prefix
    parsed = parse_message(io.BytesIO(copy.prefix + raw))
    assert parsed.size == len(copy.prefix + raw)
    return [copy.action, copy.mailbox, copy.special_use, copy.prefix.decode()]


def test_from_the_junk_score_on_the_message_goes_to_junk_with_the_fields() -> None:
    action, mailbox, special, fields = run_stage(SpamConfig(), FORGED)
    assert (action, mailbox, special) == ("deliver", "Junk", "\\Junk")  # never refused, however high
    assert isinstance(fields, str)
    assert fields.startswith("X-Spam-Status: Yes, score=9.00 required=6.00\r\nX-Spam-Score: 9.00\r\n")
    assert "X-Spamd-Result: True; 9.00 / 6.00;\r\n\tR_SPF_FAIL(4.00),\r\n\t" in fields


def test_below_it_the_message_stays_in_the_inbox_and_says_so() -> None:
    action, mailbox, _, fields = run_stage(
        SpamConfig(), results("iprev=fail", "spf=fail smtp.mailfrom=a.example")
    )
    assert (action, mailbox) == ("deliver", "INBOX")
    assert isinstance(fields, str)
    assert fields.startswith("X-Spam-Status: No, score=5.00 required=6.00\r\n")


def test_a_listing_under_the_junk_action_goes_to_junk_whatever_the_score() -> None:
    junk = dataclasses.replace(SpamConfig(), dnsbl_action="junk")
    _, mailbox, _, fields = run_stage(junk, CLEAN, ("bl.test",))
    assert mailbox == "Junk"
    assert isinstance(fields, str)
    assert fields.startswith("X-Spam-Status: Yes, score=3.00 required=6.00\r\n")
    _, mailbox, _, _ = run_stage(SpamConfig(), CLEAN, ("bl.test",))  # the reject action: only counted
    assert mailbox == "INBOX"


def test_without_add_headers_nothing_is_added() -> None:
    quiet = dataclasses.replace(SpamConfig(), add_headers=False)
    assert run_stage(quiet, FORGED)[1:] == ["Junk", "\\Junk", ""]


@pytest.mark.parametrize(
    ("rspamd_url", "builtin", "verify", "zones", "built"),
    [
        ("", True, True, (), "builtin"),
        ("", True, False, ("bl.test",), "builtin"),
        ("", True, False, (), None),
        ("", False, True, ("bl.test",), None),
        ("http://127.0.0.1:11333", False, False, (), "rspamd"),
    ],
)
def test_the_stage_is_built_when_it_has_something_to_judge_by(
    rspamd_url: str, builtin: bool, verify: bool, zones: tuple[str, ...], built: str | None
) -> None:
    spam = SpamConfig(rspamd_url=rspamd_url, builtin_filter=builtin, dnsbl_zones=zones)
    sections = {SpamConfig: spam, MailAuthConfig: MailAuthConfig(verify=verify), ServerConfig: ServerConfig()}
    config = Config(Path("postoffice.toml"), Path("."), sections, {})
    stage = make_stage(config, None)  # type: ignore[arg-type]  # the stage keeps no store
    assert (None if stage is None else "builtin" if stage.client is None else "rspamd") == built
