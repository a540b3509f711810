"""The strict reading of a submitted message's originator fields lives with the submission policy in
`postoffice.delivery.originator` (docs/decisions/0024, 0041); re-exported here for existing callers."""

from postoffice.delivery.originator import (
    MAX_ADDRESSES,
    MAX_FIELD_OCTETS,
    Claim,
    OriginatorRefused,
    mentions,
    parse_mailbox_list,
    read_claims,
)

__all__ = [
    "MAX_ADDRESSES",
    "MAX_FIELD_OCTETS",
    "Claim",
    "OriginatorRefused",
    "mentions",
    "parse_mailbox_list",
    "read_claims",
]
