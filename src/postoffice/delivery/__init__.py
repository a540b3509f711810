"""Local delivery: the one pipeline every message takes into the mailboxes, and the submission policy.

Modules (docs/decisions/0040, 0041)
- `plan`: what a delivery is about (`Message`, `Envelope`, `Origin`, `Recipient`) and what it will do
  (`DeliveryPlan`, one `RecipientPlan` per account: target mailbox or special use, flags and keywords,
  header fields for that copy only, deliver / reject with a `Refusal` / discard; the remote recipients).
- `stages`: the `Stage` protocol and the registry `STAGES` (authentication results, spam scoring, Sieve:
  none yet), built per configuration by `build_stages`.
- `quota`: the storage quotas, the plan's last step in every pipeline and the early answer at RCPT (452
  4.2.2 mailbox full, 552 5.2.2 larger than the quota; docs/decisions/0053).
- `pipeline`: `DeliveryPipeline`: resolve recipients, plan, run the stages, commit the plan with one
  `MailStore.commit_delivery` call (one transaction). Port 25, submission, relaying and the queue's local
  deliveries all go through it; IMAP APPEND (and later the webmail's Sent copy) is a store call, not a
  delivery.
- `submission`: `SubmissionPolicy`, what an authenticated user may send (sender ownership, From/Sender/
  Resent-*, limits, the Date and Message-ID fixes), as one service for SMTP submission, the webmail and
  JMAP; `originator`: the strict reading of the originator fields it relies on.

Imports: `postoffice.store`, `postoffice.message`, `postoffice.directory`, and three leaf modules of
`postoffice.smtp` that do no I/O (`dsn`, the report builder; `address`, address syntax; `xtext`). The SMTP
glue and the queue runner import this package, never the other way round.
"""
