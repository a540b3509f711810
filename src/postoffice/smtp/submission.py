"""The submission policy is a service of its own, shared by SMTP submission, the webmail and JMAP:
`postoffice.delivery.submission` (docs/decisions/0019, 0024, 0041); re-exported here for existing callers."""

from postoffice.delivery.submission import (
    SendingLimiter,
    SubmissionDecision,
    SubmissionPolicy,
    missing_headers,
    owns,
    unowned_claim,
)

__all__ = [
    "SendingLimiter",
    "SubmissionDecision",
    "SubmissionPolicy",
    "missing_headers",
    "owns",
    "unowned_claim",
]
