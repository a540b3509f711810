"""The webmail's filters as Sieve and back (`postoffice.web.filters`, docs/decisions/0088): rules and the
vacation reply the forms make read back as the same rules and pass the delivery's checker (property-tested);
a script written by hand or by another program keeps its text, byte for byte, where the forms did not change
it; what the forms cannot show exactly stays an advanced block."""

from __future__ import annotations

import dataclasses
import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.sieve.interpreter import (
    Discard,
    FileInto,
    Keep,
    Outcome,
    SieveContext,
    SieveMessage,
    Vacation,
    run,
)
from postoffice.sieve.mailto import ADDRESS
from postoffice.sieve.stage import compile_script
from postoffice.web import filters
from postoffice.web.filters import Condition, Rule

EMPTY = filters.read("")
NOW = datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC)
SUPPORT = Rule(
    "Support", (Condition("subject", "contains", "help"),), move_to="Support", reply="We got it.\r\n"
)


def script_of(*rules: Rule, vacation: filters.Vacation | None = None) -> str:
    script = EMPTY
    for rule in rules:
        script = filters.add_rule(script, rule)
    return filters.render(filters.set_vacation(script, vacation))


def kinds(script: filters.FilterScript) -> list[str]:
    return [block.kind for block in script.blocks]


def message(subject: str = "help please") -> SieveMessage:
    return SieveMessage.from_bytes(
        f"From: zoe@example.org\r\nTo: me@example.test\r\nSubject: {subject}\r\n\r\nHi\r\n".encode(),
        "zoe@example.org",
        "me@example.test",
    )


def outcome(text: str, received: SieveMessage | None = None) -> Outcome:
    """What delivery does with `received` (default: "help please") under the script `text`, at NOW."""
    return run(compile_script(text), received or message(), SieveContext(now=NOW))


def replies(result: Outcome) -> list[str]:
    return [a.reason for a in result.actions if isinstance(a, Vacation)]


# ------------------------------------------------------------------------------------------ generated rules


def test_a_rule_is_written_as_the_sieve_people_would_write_and_reads_back_as_itself() -> None:
    rule = Rule(
        name="Newsletters",
        conditions=(
            Condition("header", "exists", header="List-Id"),
            Condition("from", "not-contains", "boss"),
        ),
        mark_read=True,
        move_to="Lists/News",
        stop=True,
    )
    text = script_of(rule)
    assert text == (
        'require ["fileinto", "imap4flags"];\r\n\r\n'
        "# rule:[Newsletters]\r\n"
        'if allof (exists "List-Id", not address :contains "from" "boss") {\r\n'
        '  addflag "\\\\Seen";\r\n'
        '  fileinto "Lists/News";\r\n'
        "  stop;\r\n"
        "}\r\n"
    )
    compile_script(text)
    (block,) = filters.read(text).shown()[0:1]
    assert block[1].rule == rule


def test_every_condition_and_action_reads_back() -> None:
    rules = [
        Rule(
            conditions=(Condition("to", "is", "me@example.org"),),
            forward_to="me@elsewhere.example",
            keep=True,
        ),
        Rule(conditions=(Condition("subject", "matches", "*[urgent]*"),), flag=True),
        Rule(conditions=(Condition("size", "over", str(5 * 1024 * 1024)),), discard=True),
        Rule(
            conditions=(Condition("size", "under", "1000"), Condition("header", "not-is", "x", "X-Spam")),
            any_of=True,
            reply="Thanks!\r\n",
        ),
        Rule(conditions=(), move_to="Archive"),  # every message
        Rule(conditions=(Condition("header", "not-exists", header="Date"),), stop=True),
    ]
    text = script_of(*rules)
    compile_script(text)
    assert [b.rule for _, b in filters.read(text).shown()] == rules
    assert 'redirect "me@elsewhere.example";\r\n  keep;' in text
    assert "if true {" in text


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    field = draw(st.sampled_from(filters.FIELDS))
    if field == "size":
        return Condition("size", draw(st.sampled_from(filters.SIZE_OPS)), str(draw(st.integers(0, 2**40))))
    ops = filters.HEADER_OPS if field == "header" else filters.TEXT_OPS
    op = draw(st.sampled_from(ops))
    header = ""
    if field == "header":
        header = draw(st.from_regex(r"[!-9;-~]{1,20}", fullmatch=True))
        if header.lower() == "subject" and not op.endswith("exists"):
            field, header = "subject", ""  # a header condition on Subject is the Subject condition
    value = "" if op.endswith("exists") else draw(ONE_LINE)
    return Condition(field, op, value, header)


ONE_LINE = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=30
).filter(lambda text: "${" not in text)
ADDRESSES = st.from_regex(ADDRESS, fullmatch=True).filter(
    lambda text: filters.rule_problem(Rule(forward_to=text)) is None  # no control character, no variable
)
TEXTS = (
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=80)
    .map(filters.clean_text)
    .filter(lambda text: text != "" and "${" not in text)
)


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    found = draw(st.lists(conditions(), max_size=4))
    discard = draw(st.booleans())
    rule = Rule(
        name=draw(st.one_of(st.just(""), ONE_LINE.map(str.strip))),
        conditions=tuple(found),
        any_of=len(found) > 1 and draw(st.booleans()),
        mark_read=draw(st.booleans()),
        flag=draw(st.booleans()),
        move_to="" if discard else draw(st.one_of(st.just(""), ONE_LINE)),
        forward_to="" if discard else draw(st.one_of(st.just(""), ADDRESSES)),
        keep=not discard and draw(st.booleans()),
        reply=draw(st.one_of(st.just(""), TEXTS)),
        discard=discard,
        stop=draw(st.booleans()),
    )
    if rule.forward_to and rule.keep:
        rule = dataclasses.replace(rule, copy=draw(st.booleans()))  # written `redirect :copy`
    problem = filters.rule_problem(rule)
    return rule if problem is None else Rule(stop=True, name=rule.name)


@st.composite
def vacations(draw: st.DrawFn) -> filters.Vacation:
    days = sorted(
        draw(st.lists(st.dates(datetime.date(2000, 1, 1), datetime.date(2999, 12, 31)), max_size=2))
    )
    first = last = ""
    if len(days) == 2:
        first, last = days[0].isoformat(), days[1].isoformat()
    elif days:
        first, last = (days[0].isoformat(), "") if draw(st.booleans()) else ("", days[0].isoformat())
    return filters.Vacation(
        draw(TEXTS),
        draw(st.one_of(st.just(""), ONE_LINE)),
        tuple(draw(st.lists(ADDRESSES, max_size=3))),
        draw(st.integers(1, filters.MAX_DAYS)),
        first,
        last,
    )


@given(st.lists(rules(), max_size=5), st.one_of(st.none(), vacations()))
def test_generated_rules_and_vacation_read_back_as_themselves_and_pass_the_checker(
    made: list[Rule], vacation: filters.Vacation | None
) -> None:
    assert all(filters.rule_problem(rule) is None for rule in made)
    assert vacation is None or filters.vacation_problem(vacation) is None
    text = script_of(*made, vacation=vacation)
    compile_script(text)  # what ManageSieve and delivery accept
    back = filters.read(text)
    assert [b.rule for b in back.blocks if b.kind == "rule"] == made
    assert back.vacation == vacation
    assert "advanced" not in kinds(back)
    assert filters.render(back) == text  # nothing changed: the same text


# ------------------------------------------------------------------------------------ scripts from elsewhere

HAND_WRITTEN = (
    "# Filters of Ada, kept with sieve-connect\n"
    'require ["fileinto", "variables", "include", "envelope", "body", "vacation"];\n'
    "\n"
    "/* lists by their id */\n"
    'if header :matches "List-Id" "*<*.lists.example>" {\n'
    '  set :lower "list" "${2}";\n'
    '  fileinto "Lists/${list}";\n'
    "  stop;\n"
    "}\n"
    "# rule:[From the bank]\n"
    'if address :is "from" "alerts@bank.example" { fileinto "Bank"; }\n'
    'if envelope :is "to" "ada+shop@example.org" {\n'
    '  if body :contains "invoice" { fileinto "Invoices"; } else { keep; }\n'
    "}\n"
    'elsif exists "x-unknown" { discard; }\n'
    'include :personal "spam-rules";\n'
    "vacation :days 2 text:\n"
    "I am away.\n"
    "..and back soon.\n"
    ".\n"
    ";\n"
    "# end of the script\n"
)


PIECES = [
    'if header :contains "subject" "x" { fileinto "A"; }',
    'if header :contains "subject" "x" { fileinto "A"; } elsif true { stop; } else { keep; }',
    'set "a" "b";',
    'if envelope :is "from" "${a}" {\n  if true { discard; }\n}',
    "keep;",
    'vacation :days 2 "Away.";',
    'redirect :copy "x@y.example";',
    'if address :is "from" "a@b.example" { addflag ["\\\\Seen", "\\\\Flagged"]; stop; }',
    "# rule:[Named]\nif size :under 10k { keep; }",
    'include :optional "other";',
]
GAPS = ["", " ", "\n", "\n\n", "\n# a comment\n", "/* c */ ", "\n  \t# rule:[x]\n"]


@given(
    st.lists(st.tuples(st.sampled_from(GAPS), st.sampled_from(PIECES)), max_size=6),
    st.sampled_from(GAPS),
    st.booleans(),
)
def test_a_script_read_and_written_back_unchanged_is_the_same_text(
    pieces: list[tuple[str, str]], tail: str, crlf: bool
) -> None:
    requires = 'require ["fileinto", "variables", "envelope", "vacation", "copy", "imap4flags", "include"];'
    text = requires + "".join(gap + piece for gap, piece in pieces) + tail
    if crlf:
        text = text.replace("\n", "\r\n")
    compile_script(text)
    script = filters.read(text)
    assert filters.render(script) == text
    rule = Rule("New", (Condition("from", "is", "n@example.org"),), flag=True)
    added = filters.render(filters.add_rule(script, rule))
    compile_script(added)
    # every block as it was (the require line may name other capabilities), the new rule after them (and
    # after the comments on the last command's line, which belong to it)
    body = text[len(requires) : len(text) - len(script.tail)].replace("\r\n", "\n").strip()
    added_body = added.split(";", 1)[1].replace("\r\n", "\n").lstrip()
    assert added_body.startswith(body)
    assert added_body[len(body) :].lstrip().startswith("# rule:[New]")
    assert filters.read(added).blocks[-1].rule == rule


def test_a_hand_written_script_is_read_as_advanced_blocks_a_rule_and_its_vacation_reply() -> None:
    compile_script(HAND_WRITTEN)
    script = filters.read(HAND_WRITTEN)
    assert kinds(script) == ["require", "advanced", "rule", "advanced", "advanced", "vacation"]
    assert script.requires == ("fileinto", "variables", "include", "envelope", "body", "vacation")
    assert script.newline == "\n"
    rule = script.blocks[2].rule
    assert rule == Rule("From the bank", (Condition("from", "is", "alerts@bank.example"),), move_to="Bank")
    assert script.vacation == filters.Vacation("I am away.\r\n.and back soon.\r\n", days=2)
    assert script.blocks[3].text.startswith('if envelope :is "to"')
    assert "elsif" in script.blocks[3].text
    assert filters.render(script) == HAND_WRITTEN


def test_adding_a_rule_to_a_hand_written_script_keeps_every_byte_of_it() -> None:
    script = filters.read(HAND_WRITTEN)
    added = filters.add_rule(script, Rule("Big", (Condition("size", "over", "1048576"),), flag=True))
    text = filters.render(added)
    head, tail = HAND_WRITTEN.split(
        'require ["fileinto", "variables", "include", "envelope", "body", "vacation"];'
    )
    assert text == (
        head
        + 'require ["fileinto", "variables", "include", "envelope", "body", "vacation", "imap4flags"];'
        + tail.removesuffix("\n# end of the script\n")
        + '\n\n# rule:[Big]\nif size :over 1048576 {\n  addflag "\\\\Flagged";\n}'
        + "\n# end of the script\n"
    )
    compile_script(text)


def test_changing_deleting_and_moving_a_rule_leaves_the_other_blocks_as_they_were() -> None:
    script = filters.read(HAND_WRITTEN)
    changed = filters.render(
        filters.replace_rule(
            script, 2, Rule("Bank", (Condition("from", "is", "alerts@bank.example"),), flag=True)
        )
    )
    assert changed == HAND_WRITTEN.replace(
        '# rule:[From the bank]\nif address :is "from" "alerts@bank.example" { fileinto "Bank"; }',
        '# rule:[Bank]\nif address :is "from" "alerts@bank.example" {\n  addflag "\\\\Flagged";\n}',
    ).replace('"body", "vacation"]', '"body", "vacation", "imap4flags"]')
    deleted = filters.render(filters.delete_block(script, 3))
    assert deleted == HAND_WRITTEN.replace(
        HAND_WRITTEN[HAND_WRITTEN.index("\nif envelope") : HAND_WRITTEN.index("\ninclude")], ""
    )
    moved = filters.read(filters.render(filters.move_block(script, 2, -1)))
    assert [b.kind for b in moved.blocks] == [
        "require",
        "rule",
        "advanced",
        "advanced",
        "advanced",
        "vacation",
    ]
    assert moved.blocks[1].rule == script.blocks[2].rule
    assert moved.blocks[2].text == script.blocks[1].text
    assert filters.move_block(script, 1, -1) == script  # the first cannot go up
    with pytest.raises(IndexError):
        filters.move_block(script, 0, 1)  # the require is not a shown block


def test_the_vacation_reply_of_another_program_is_edited_in_place_of_it_and_goes_first() -> None:
    script = filters.read(HAND_WRITTEN)
    new = filters.Vacation("Back on Monday.\r\n", subject="Away", days=3, last_day="2099-01-31")
    text = filters.render(filters.set_vacation(script, new))
    assert "vacation :days 2" not in text
    assert text.index("vacation :days 3") < text.index("List-Id")  # before every rule: no stop skips it
    assert '"variables", "include", "envelope", "body", "vacation", "date", "relational"]' in text
    compile_script(text)
    assert filters.read(text).vacation == new
    off = filters.render(filters.set_vacation(script, None))
    assert "vacation" not in off.split("];", 1)[1]
    assert "I am away." not in off


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('require "vacation";\r\nvacation "Away.";\r\n', filters.Vacation("Away.")),
        (
            'require ["vacation", "date", "relational"];\r\n'
            'if allof(currentdate :value "ge" "date" "2030-05-01",\r\n'
            '         currentdate :value "le" "date" "2030-05-09")\r\n'
            '{ vacation :subject "Out" :addresses ["a@b.example"] :days 10 "Away."; }\r\n',
            filters.Vacation("Away.", "Out", ("a@b.example",), 10, "2030-05-01", "2030-05-09"),
        ),
        (
            'require ["vacation", "date", "relational"];\r\n'
            'if currentdate :value "le" "date" "2030-05-09" { vacation "Away."; }\r\n',
            filters.Vacation("Away.", last_day="2030-05-09"),
        ),
        ('require "vacation";\r\nvacation :from "x@y.example" "Away.";\r\n', None),  # :from: not in the form
        ('require ["vacation", "vacation-seconds"];\r\nvacation :seconds 60 "Away.";\r\n', None),
        ('require "vacation";\r\nif header :is "x" "y" { vacation "Away."; }\r\n', None),
    ],
)
def test_vacation_replies_other_programs_write_are_read_when_the_form_can_show_them(
    text: str, expected: filters.Vacation | None
) -> None:
    script = filters.read(text)
    assert script.vacation == expected
    assert script.other_vacations() == (expected is None)


@pytest.mark.parametrize(
    "text",
    [
        'if header :comparator "i;octet" :is "subject" "x" { keep; }',  # a comparator
        'if header :is ["subject", "from"] "x" { keep; }',  # two fields
        'if header :is "subject" ["x", "y"] { keep; }',  # two keys
        'if header :is "subject" "x" { fileinto "A"; addflag "\\\\Seen"; }',  # flags after the fileinto
        'if header :is "subject" "x" { }',  # nothing done
        'if header :is "subject" "x" { keep; } else { discard; }',
        'if address :domain :is "from" "example.org" { keep; }',  # an address part
        "if not size :over 10 { keep; }",
        'if header :is "subject" "x" { discard; keep; }',  # discard with keep: nothing the form writes
        'if header :is "subject" "${x}" { keep; }',  # a variable
        'if header :is "subject" "x" { addflag "$Label"; }',  # another flag
        'if header :is "subject" "x" { redirect "not an address"; }',
    ],
)
def test_what_the_form_cannot_show_exactly_stays_advanced_and_unchanged(text: str) -> None:
    script = filters.read(text)
    assert kinds(script) == ["advanced"]
    assert filters.render(filters.add_rule(script, Rule(stop=True))).startswith(text + "\r\n\r\nif true {")


def test_redirect_with_copy_reads_as_forward_and_keep_and_is_written_back_as_redirect_copy() -> None:
    """Review of 4d8d2a1, 5: `redirect :copy` was rewritten as `redirect; keep;` on any save, and an explicit
    keep is not cancelled by a later fileinto as the implicit keep is: the message landed in the Inbox too."""
    text = (
        'require ["copy", "fileinto"];\n'
        'if header :contains "subject" "x" { redirect :copy "a@b.example"; }\n'
        'if header :contains "subject" "x" { fileinto "X"; }\n'
    )
    script = filters.read(text)
    read = script.blocks[1].rule
    assert read is not None
    renamed = filters.render(filters.replace_rule(script, 1, dataclasses.replace(read, name="Boss")))
    message = SieveMessage.from_bytes(b"Subject: x\r\n\r\nHi\r\n", "zoe@example.org", "me@example.test")
    for written in (text, renamed):  # delivered the same: forwarded, and filed (not kept in the Inbox too)
        outcome = run(compile_script(written), message, SieveContext(now=NOW))
        assert not outcome.implicit_keep
        assert not any(isinstance(a, Keep) for a in outcome.actions)
        assert [a.mailbox for a in outcome.actions if isinstance(a, FileInto)] == ["X"]
    assert (
        '# rule:[Boss]\nif header :contains "subject" "x" {\n  redirect :copy "a@b.example";\n}\n' in renamed
    )
    rule = Rule(
        conditions=(Condition("subject", "contains", "x"),), forward_to="a@b.example", keep=True, copy=True
    )
    assert read == rule
    assert filters.render(filters.add_rule(script, Rule(stop=True))).startswith(text.rstrip("\n"))
    # without "keep a copy" it is a plain redirect
    plain = filters.render(filters.replace_rule(script, 1, dataclasses.replace(rule, keep=False, copy=False)))
    assert 'redirect "a@b.example";\n}' in plain
    assert filters.rule_problem(dataclasses.replace(rule, keep=False)) is not None  # copy needs both
    # `redirect :copy` and an explicit keep is not what the form writes: advanced
    both = filters.read('require "copy";\nif true { redirect :copy "a@b.example"; keep; }\n')
    assert kinds(both) == ["require", "advanced"]


def test_a_script_that_does_not_parse_is_refused_with_its_place() -> None:
    from postoffice.sieve.grammar import SieveSyntaxError

    with pytest.raises(SieveSyntaxError) as caught:
        filters.read("if true {\n  keep;\n")
    assert (caught.value.line, caught.value.column) == (3, 1)


# ----------------------------------------------------------------------------------------- replies at once


def test_a_rule_that_replies_and_the_vacation_reply_send_one_reply_not_a_failed_run() -> None:
    """RFC 5230 section 4.7: one vacation action per run. The guard lets the first reply alone go."""
    text = script_of(
        Rule(
            "Support", (Condition("subject", "contains", "help"),), move_to="Support", reply="We got it.\r\n"
        ),
        Rule("Twice", (Condition("subject", "contains", "help"),), reply="Another reply.\r\n"),
        vacation=filters.Vacation("I am away.\r\n", first_day="2000-01-01"),
    )
    message = SieveMessage.from_bytes(
        b"From: zoe@example.org\r\nTo: me@example.test\r\nSubject: help please\r\n\r\nHi\r\n",
        "zoe@example.org",
        "me@example.test",
    )
    now = datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)
    outcome = run(compile_script(text), message, SieveContext(now=now))
    replies = [a for a in outcome.actions if isinstance(a, Vacation)]
    assert [r.reason for r in replies] == ["I am away.\r\n"]  # the vacation reply first, alone
    assert [a.mailbox for a in outcome.actions if isinstance(a, FileInto)] == ["Support"]
    before = run(
        compile_script(text), message, SieveContext(now=datetime.datetime(1999, 5, 1, tzinfo=datetime.UTC))
    )
    assert [a.reason for a in before.actions if isinstance(a, Vacation)] == ["We got it.\r\n"]


def test_one_reply_needs_no_guard_and_two_are_guarded() -> None:
    """With one reply no second can collide: it is written without the variable (so "variables" is not
    required); a second one makes both guarded (decision 0088)."""
    one = script_of(SUPPORT)
    assert "variables" not in one
    assert "vacation :days 1" in one
    assert "auto_reply_sent" not in one
    away = filters.Vacation("Away.\r\n")
    assert (
        script_of(vacation=away)
        == 'require ["vacation"];\r\n\r\nvacation :days 7 text:\r\nAway.\r\n.\r\n;\r\n'
    )
    both = filters.render(filters.set_vacation(filters.read(one), away))
    assert 'require ["fileinto", "vacation", "variables"];' in both
    assert both.count('set "auto_reply_sent" "yes";') == 2
    assert replies(outcome(both)) == ["Away.\r\n"]
    assert filters.read(both).vacation == away


def test_a_vacation_another_program_wrote_is_guarded_when_a_rule_that_replies_is_added() -> None:
    """Review of 4d8d2a1, 1: a bare vacation read as the vacation reply was kept as it was next to a rule's
    reply: two vacations in one run, the run failed and the message was kept unfiltered."""
    text = 'require ["vacation"];\r\nvacation :days 7 "I am away";\r\n'
    script = filters.read(text)
    assert script.vacation == filters.Vacation("I am away")
    out = filters.render(filters.add_rule(script, SUPPORT))
    result = outcome(out)
    assert replies(result) == ["I am away"]
    assert [a.mailbox for a in result.actions if isinstance(a, FileInto)] == ["Support"]
    back = filters.read(out)
    assert back.vacation == script.vacation
    assert [b.rule for _, b in back.shown()] == [SUPPORT]


def test_a_rule_reply_another_program_wrote_is_guarded_when_the_vacation_reply_is_turned_on() -> None:
    """Review of 4d8d2a1, 1b: the same with a bare `vacation :days 1` read as a rule's reply."""
    text = (
        'require ["vacation", "fileinto"];\r\n'
        'if header :contains "subject" "help" { fileinto "Support"; vacation :days 1 "We got it."; }\r\n'
    )
    script = filters.read(text)
    assert script.blocks[1].rule == dataclasses.replace(SUPPORT, name="", reply="We got it.")
    always = filters.render(filters.set_vacation(script, filters.Vacation("Away.\r\n")))
    assert replies(outcome(always)) == ["Away.\r\n"]
    later = filters.render(
        filters.set_vacation(script, filters.Vacation("Away.\r\n", first_day="2099-01-01"))
    )
    assert replies(outcome(later)) == ["We got it."]
    assert [a.mailbox for a in outcome(later).actions if isinstance(a, FileInto)] == ["Support"]


def test_a_vacation_reply_read_after_another_reply_is_put_first_when_they_are_guarded() -> None:
    """The vacation reply sets the variable without testing it, so it must run before every other reply."""
    text = (
        'require ["vacation", "fileinto"];\r\n'
        'if header :contains "subject" "help" { fileinto "Support"; vacation :days 1 "We got it."; }\r\n'
        'vacation "Away.";\r\n'
    )
    script = filters.read(text)
    assert script.vacation == filters.Vacation("Away.")
    out = filters.render(filters.add_rule(script, Rule(flag=True)))  # any edit makes the script safe
    assert out.index("Away.") < out.index("We got it.")
    assert replies(outcome(out)) == ["Away."]


def test_a_reply_is_refused_while_a_hand_written_block_holds_an_unguarded_vacation() -> None:
    """Review of 4d8d2a1, 1c: a vacation in an advanced block cannot be rewritten; the page said "the first
    one wins", but the run failed. The forms refuse a second reply instead."""
    text = (
        'require ["vacation"];\r\n'
        'if header :contains "subject" "help" { vacation :days 1 :from "me@example.test" "We got it."; }\r\n'
    )
    script = filters.read(text)
    assert script.other_vacations()
    with pytest.raises(filters.FilterProblem) as refused:
        filters.set_vacation(script, filters.Vacation("Away.\r\n"))
    assert "another automatic reply" in refused.value.message
    with pytest.raises(filters.FilterProblem) as refused:
        filters.add_rule(script, SUPPORT)
    assert "another automatic reply" in refused.value.message
    # rules without a reply are still added, and the hand-written reply is kept as it was
    out = filters.render(filters.add_rule(script, Rule(flag=True)))
    assert text.split("\r\n")[1] in out
    assert replies(outcome(out)) == ["We got it."]
    # a reply the webmail guarded, inside a hand-written block, is no obstacle
    guarded = script_of(SUPPORT, dataclasses.replace(SUPPORT, name="Again", reply="Again.\r\n"))
    hand = filters.read(guarded.rstrip("\r\n") + " elsif true { keep; }\r\n")
    assert kinds(hand) == ["require", "rule", "advanced"]
    assert not hand.other_vacations()
    both = filters.render(filters.set_vacation(hand, filters.Vacation("Away.\r\n")))
    assert replies(outcome(both)) == ["Away.\r\n"]


def test_a_second_reply_is_refused_when_variables_would_change_a_hand_written_block() -> None:
    """Review of 4d8d2a1, 2: requiring "variables" for the guard turned a hand-written `"${SPAM}"` into ""
    (so `:contains ""`: every message discarded)."""
    text = 'if header :contains "subject" "${SPAM}" {\r\n  discard;\r\n}\r\n'
    hello = message("hello")
    assert not any(isinstance(a, Discard) for a in outcome(text, hello).actions)
    one = filters.render(filters.add_rule(filters.read(text), SUPPORT))  # one reply: no variables needed
    assert "variables" not in one
    assert not any(isinstance(a, Discard) for a in outcome(one, hello).actions)
    with pytest.raises(filters.FilterProblem) as refused:
        filters.set_vacation(filters.read(one), filters.Vacation("Away.\r\n"))
    assert '"variables"' in refused.value.message
    # with "variables" required already, "${" means a variable already: two replies change nothing more
    two = filters.set_vacation(
        filters.add_rule(filters.read('require "variables";\r\n' + text), SUPPORT),
        filters.Vacation("Away.\r\n"),
    )
    assert replies(outcome(filters.render(two))) == ["Away.\r\n"]


def test_a_second_reply_is_refused_while_a_hand_written_block_uses_the_guard_variable() -> None:
    """Review of 4d8d2a1, 10: a hand-written `set "auto_reply_sent"` silenced every reply of the forms."""
    text = 'require ["variables"];\r\nset "auto_reply_sent" "no";\r\n'
    later = filters.Vacation("Away.\r\n", first_day="2099-01-01")
    one = filters.render(filters.set_vacation(filters.read(text), later))  # one reply: no guard
    assert replies(outcome(one)) == []
    with pytest.raises(filters.FilterProblem) as refused:
        filters.add_rule(filters.read(one), SUPPORT)
    assert refused.value.values == {"name": "auto_reply_sent"}
    assert "uses the variable" in refused.value.message


def test_names_are_read_only_from_the_hash_comment_directly_before_a_rule() -> None:
    """Review of 4d8d2a1, 3: `# rule:` lines inside bracket comments were read as names and deleted on
    save, with the comment's `*/`: the renamed rule became a comment, an unchanged one a syntax error."""
    text = (
        'require "fileinto";\n'
        "/* old rule, turned off:\n# rule:[Old] */\n"
        'if header :contains "subject" "a" { fileinto "A"; }\n'
        '/*\n# rule:[Old newsletter]\nif header :contains "list-id" "old" { discard; }\n*/\n'
        "# rule:[News]\n"
        'if header :contains "subject" "b" { fileinto "B"; }\n'
        "# rule:[Not mine]\n# a note between\n"
        'if header :contains "subject" "c" { fileinto "C"; }\n'
    )
    script = filters.read(text)
    (a_index, a), (b_index, b), (_c_index, c) = script.shown()
    assert (a.name, b.name, c.name) == ("", "News", "")
    assert a.rule is not None
    assert b.rule is not None
    renamed = filters.render(
        filters.replace_rule(script, a_index, dataclasses.replace(a.rule, name="Renamed"))
    )
    assert "/* old rule, turned off:\n# rule:[Old] */\n# rule:[Renamed]\nif " in renamed
    assert [a.mailbox for a in outcome(renamed, message("a")).actions if isinstance(a, FileInto)] == ["A"]
    unchanged = filters.render(filters.replace_rule(script, b_index, b.rule))
    compile_script(unchanged)
    assert "/*\n# rule:[Old newsletter]\nif" in unchanged
    assert "*/\n# rule:[News]\nif" in unchanged
    renamed_b = filters.render(filters.replace_rule(script, b_index, dataclasses.replace(b.rule, name="B")))
    assert "*/\n# rule:[B]\nif" in renamed_b
    assert "# rule:[Not mine]\n# a note between\n" in renamed_b


def test_a_script_that_starts_with_a_byte_order_mark_can_be_changed_with_the_forms() -> None:
    """Review of 4d8d2a1, 6: the BOM (which the parser skips at the start only) landed mid-script."""
    text = (
        '\ufeffif header :contains "subject" "a" { keep; }\r\nif header :contains "subject" "b" { stop; }\r\n'
    )
    script = filters.read(text)
    assert filters.render(script) == text
    second = script.shown()[1][0]
    for edited in (
        filters.add_rule(script, Rule(flag=True)),
        filters.move_block(script, second, -1),
        filters.delete_block(script, 0),
        filters.set_vacation(script, filters.Vacation("Away.\r\n")),
    ):
        out = filters.render(edited)
        compile_script(out)
        assert out.startswith("\ufeff")
        assert "\ufeff" not in out[1:]


def test_a_comment_on_a_command_s_line_stays_with_that_command() -> None:
    """Review of 4d8d2a1, 11: `} # why` belonged to the next block: deleting or moving that one took it."""
    text = (
        'require "fileinto";\n'
        'if header :contains "subject" "a" { fileinto "A"; } # keep A: the auditors want it\n'
        'if header :contains "subject" "b" { fileinto "B"; }\n'
    )
    script = filters.read(text)
    (a_index, a), (b_index, _b) = script.shown()
    assert filters.render(filters.delete_block(script, b_index)) == text.rsplit("\n", 2)[0] + "\n"
    moved = filters.render(filters.move_block(script, b_index, -1))
    assert moved.splitlines() == [text.splitlines()[0], text.splitlines()[2], text.splitlines()[1]]
    assert a.trail == " # keep A: the auditors want it"
    assert a.rule is not None
    changed = filters.render(filters.replace_rule(script, a_index, dataclasses.replace(a.rule, flag=True)))
    assert '  fileinto "A";\n} # keep A: the auditors want it\nif header :contains "subject" "b"' in changed
    # a hash comment that ends the script, moved before another block: that block starts a new line
    last = filters.read("if true { keep; }\nif false { stop; } # the end")
    up = filters.render(filters.move_block(last, 1, -1))
    assert up.startswith("if false { stop; } # the end\nif true { keep; }")
    compile_script(up)
    assert len(filters.read(up).shown()) == 2


def test_deleting_the_first_command_keeps_the_script_s_header_comment() -> None:
    """Review of 4d8d2a1, 11: the comments before the script's first command went with it."""
    text = "# My filters, by Thunderbird\n# rule:[First]\nif true { keep; }\nif false { stop; }\n"
    script = filters.read(text)
    assert (
        filters.render(filters.delete_block(script, 0))
        == "# My filters, by Thunderbird\nif false { stop; }\n"
    )
    only = filters.read("# My filters\nif true { keep; }\n")
    assert filters.render(filters.delete_block(only, 0)) == "# My filters\n"


# ------------------------------------------------------------------------------------------------ the forms


@pytest.mark.parametrize(
    ("text", "octets"),
    [
        ("500 KB", 512000),
        ("5MB", 5242880),
        ("1.5 M", 1572864),
        ("2048", 2048),
        ("10 kib", 10240),
        ("x", None),
        ("0", None),
    ],
)
def test_sizes_as_people_write_them(text: str, octets: int | None) -> None:
    assert filters.parse_size(text) == octets
    if octets is not None:
        assert filters.parse_size(filters.size_text(octets)) == octets


def test_form_values_are_cleaned_and_checked() -> None:
    assert filters.clean_text("a\r\nb \n\n") == "a\r\nb\r\n"
    assert filters.clean_text("  \n") == ""
    assert filters.clean_line(" a\tb\x00\n") == "a b"
    bad = Rule(conditions=(Condition("from", "contains", "${x}"),), flag=True)
    problem = filters.rule_problem(bad)
    assert problem is not None
    assert "${" in problem.message
    both = Rule(discard=True, move_to="A")
    assert filters.rule_problem(both) is not None
    assert filters.vacation_problem(filters.Vacation("x", first_day="2030-02-01", last_day="2030-01-01"))
    assert filters.vacation_problem(filters.Vacation("x", addresses=("not an address",)))
    assert filters.vacation_problem(filters.Vacation("x", days=91))
    assert filters.vacation_problem(filters.Vacation("x\r\n", first_day="2030-02-30"))
    assert filters.vacation_problem(filters.Vacation("x\r\n", first_day="2030-02-28")) is None
