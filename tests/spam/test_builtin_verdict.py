"""The built-in verdict (docs/decisions/0089): the score from the authentication results (given as data by
the authentication stage) and the DNSBL listings, which symbols count and which do not (nor what a trusted
ARC sealer's override explains), and what the stage does with it: Junk from `junk_score` on or for a listing
under the junk action, never a refusal, the X-Spam-* fields as rspamd's; the stage built only when it has
something to judge by; and what a client wrote into our Authentication-Results (its HELO name) read as no
result."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from pathlib import Path

import pytest

from postoffice.config import Config, ServerConfig
from postoffice.delivery.plan import AuthenticationSummary, Envelope, Origin, Recipient, initial_plan
from postoffice.mailauth.dkim_verify import DkimResult
from postoffice.mailauth.iprev import IprevResult
from postoffice.mailauth.results import format_results, read_results, results_by_method
from postoffice.mailauth.settings import MailAuthConfig
from postoffice.mailauth.spf import SpfChecker
from postoffice.message import parse_message
from postoffice.net.dns import DnsResolver
from postoffice.spam.builtin import builtin_verdict, dnsbl_symbol
from postoffice.spam.rspamd import Verdict
from postoffice.spam.settings import SpamConfig
from postoffice.spam.stage import SpamStage, make_stage
from tests.delivery.harness import as_message, message

HOST = "mx.example.test"


def results(*methods: str) -> str:
    return "mx.example.test;\r\n\t" + ";\r\n\t".join(methods)


def summary(value: str, *, arc_override: bool = False) -> AuthenticationSummary:
    """What the authentication stage would hand over for a field with this value."""
    found = {method: tuple(found) for method, found in results_by_method(value).items()}
    return AuthenticationSummary(found, arc_override)


def verdict_of(value: str, listings: tuple[str, ...] = (), *, arc_override: bool = False) -> Verdict:
    return builtin_verdict(summary(value, arc_override=arc_override) if value else None, listings)


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
    verdict = verdict_of(CLEAN, ())
    assert (verdict.score, verdict.symbols, verdict.action) == (0.0, {}, "builtin")


def test_each_failure_has_its_weight() -> None:
    verdict = verdict_of(FORGED, ("zen.spamhaus.org", "b.barracudacentral.org"))
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
    soft = verdict_of(results("spf=softfail smtp.mailfrom=a.example", "spf=fail smtp.helo=h.example"), ())
    assert soft.symbols == {"R_SPF_SOFTFAIL": 1.5}
    helo_only = verdict_of(results("spf=none smtp.mailfrom=a.example", "spf=fail smtp.helo=h.example"), ())
    assert helo_only.symbols == {}


def test_a_failing_signature_beside_a_passing_one_counts_nothing() -> None:
    both = results("dkim=fail header.d=list.example", "dkim=pass header.d=sender.example")
    assert verdict_of(both, ()).symbols == {}
    broken = results("dkim=permerror (no key) header.d=x.example")
    assert verdict_of(broken, ()).symbols == {"R_DKIM_REJECT": 2.0}


def test_temporary_errors_and_no_results_count_nothing() -> None:
    shaky = results(
        "iprev=temperror", "spf=temperror smtp.mailfrom=a.example", "dmarc=temperror header.from=a"
    )
    assert verdict_of(shaky, ()).score == 0.0
    assert verdict_of("", ()).score == 0.0


def test_every_result_of_a_method_is_read_and_the_first_is_still_the_one_read_results_gives() -> None:
    value = results(
        "dkim=fail (x; y) header.d=a.example", "dkim=pass header.d=b.example", "spf=pass", "spf=fail"
    )
    assert results_by_method(value) == {"dkim": ["fail", "pass"], "spf": ["pass", "fail"]}
    assert read_results(value) == {"dkim": "fail", "spf": "pass"}


def test_a_helo_name_that_is_no_domain_adds_no_result() -> None:
    """EHLO "x;dkim=pass" and MAIL FROM:<>: the null sender's SPF identity would be postmaster@HELO (RFC 7208
    section 2.4); the HELO text is no domain, so it is not written as smtp.mailfrom, and whatever a client
    writes into a quoted value is never read as a result: the one signature failed."""
    checker = SpfChecker(DnsResolver(["127.0.0.1"], port=9, timeout=0.2, lifetime=0.2), receiver=HOST)
    try:  # a HELO name that is no domain and the null sender ask no DNS at all
        spf = asyncio.run(checker.check(ip="192.0.2.66", helo="x;dkim=pass;dmarc=pass", mail_from=""))
    finally:
        checker.close()
    assert (spf.mail_from.result, spf.mail_from.domain) == ("none", "")
    signature = DkimResult("fail", "bank.example", "s1", "rsa-sha256", "abcd", "body hash did not verify")
    for written in ("", "x;dkim=pass;dmarc=pass"):  # what SPF gives now, and a quoted value in any case
        value = format_results(
            HOST,
            iprev=IprevResult("fail", "192.0.2.66", "", "no PTR"),
            spf=[(spf.mail_from.result, "smtp.mailfrom", written, spf.mail_from.explanation)],
            dkim=[signature],
            dmarc=("fail", "bank.example", ""),
        )
        assert ("smtp.mailfrom" in value) == bool(written)
        assert results_by_method(value) == {
            "iprev": ["fail"],
            "spf": ["none"],
            "dkim": ["fail"],
            "dmarc": ["fail"],
        }
        assert "R_DKIM_REJECT" in verdict_of(value).symbols


def test_a_zone_becomes_an_rspamd_like_symbol() -> None:
    assert dnsbl_symbol("bl.spam-cop.net") == "RBL_BL_SPAM_COP_NET"


# -- the stage ---------------------------------------------------------------------------------------------
def run_stage(
    settings: SpamConfig, authentication: str, listings: tuple[str, ...] = (), *, arc_override: bool = False
) -> list[object]:
    raw = message("offer", sender="x@bank.example")
    origin = Origin("mx", "192.0.2.66", "mail.bank.example", dnsbl=listings)
    plan = initial_plan(Envelope("x@bank.example"), origin, [Recipient("demo@example.test", (1,))])
    plan.authentication = summary(authentication, arc_override=arc_override)
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


FORWARDED = results(
    "iprev=pass (fwd.example) policy.iprev=192.0.2.10",
    "spf=fail (not allowed) smtp.mailfrom=sender.example",  # forwarded with the envelope kept
    "dkim=fail (body hash did not verify) header.d=sender.example",  # the list added a footer
    "arc=pass (sealed by i=1 fwd.example) smtp.remote-ip=192.0.2.10",
    "dmarc=fail (policy=reject overridden by local_policy: ARC sealed by trusted fwd.example) "
    "header.from=sender.example",
)


def test_a_dmarc_failure_a_trusted_arc_sealer_overrode_is_not_scored_nor_what_forwarding_explains() -> None:
    """The authentication stage delivered it as usual (decision 0054's deliver-arc-override): the built-in
    verdict does not file it into Junk for the failures the trusted forwarder explains."""
    action, mailbox, _, fields = run_stage(SpamConfig(), FORWARDED, arc_override=True)
    assert (action, mailbox) == ("deliver", "INBOX")
    assert isinstance(fields, str)
    assert fields.startswith("X-Spam-Status: No, score=0.00 required=6.00\r\n")
    failing = FORWARDED.replace("iprev=pass", "iprev=fail")
    overridden = verdict_of(failing, ("bl.test",), arc_override=True)
    assert overridden.symbols == {"IPREV_FAIL": 1.0, "RBL_BL_TEST": 3.0}  # what forwarding does not explain
    # without the override (an untrusted sealer) the same results are scored
    _, mailbox, _, fields = run_stage(SpamConfig(), FORWARDED)
    assert mailbox == "Junk"
    assert isinstance(fields, str)
    assert fields.startswith("X-Spam-Status: Yes, score=8.00 required=6.00\r\n")


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
