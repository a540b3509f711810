"""The `[sieve]` section: the users' filters at delivery (RFC 5228; docs/decisions/0082).

Declarations only (`postoffice.settings`): imported by `postoffice.config`, so nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from postoffice.settings import section, setting


@section("sieve")
@dataclass(frozen=True)
class SieveConfig:
    enabled: bool = setting(
        True,
        "run each account's active Sieve script when mail is delivered to it",
        doc=(
            "Run each account's active Sieve script (RFC 5228) when mail arrives for it: on port 25, in "
            "local submission and for the server's own reports. Scripts are stored through ManageSieve or "
            "the webmail; an account without an active script gets its mail in the Inbox as before. A "
            "script that fails never loses a message: it is kept in the Inbox and the account is told once "
            "per version of the script. `false` = no script runs (scripts are kept)."
        ),
    )
    max_scripts: int = setting(
        32,
        "scripts an account may keep",
        doc="Scripts an account may keep (ManageSieve answers `NO (QUOTA/MAXSCRIPTS)` beyond).",
        positive=True,
    )
    max_script_size: int = setting(
        262144,
        "octets of one script",
        doc="Octets (256 KiB) of one script (ManageSieve answers `NO (QUOTA/MAXSIZE)` beyond).",
        positive=True,
    )
    global_scripts: str = setting(
        "",
        "directory of the scripts every account may include with include :global (RFC 6609); empty: none",
        doc=(
            "A directory of Sieve scripts (`NAME.sieve`) that every account's scripts may include with "
            '`include :global "NAME"` (RFC 6609), for rules the administrator keeps for everyone. '
            "Empty (the default): there are none, and such an include fails unless it is `:optional`."
        ),
    )
    max_storage: int = setting(
        1048576,
        "octets of all of an account's scripts together",
        doc="Octets (1 MiB) of all of an account's scripts together (ManageSieve `NO (QUOTA)` beyond).",
        positive=True,
    )
