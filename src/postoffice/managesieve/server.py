"""ManageSieve glue: a connection, the sans-IO core (`managesieve.protocol`), the Authenticator and the store.

Implementation notes
- The core decides the wire format and checks scripts; this module answers its decisions: logins (through
  `postoffice.auth.Authenticator` only), and the script commands on the store (`MailStore.*_sieve_script*`),
  with the `[sieve]` limits (`SieveLimits`) checked in the store's transaction.
- Store answers become response codes (RFC 5804 section 1.3): NotFound -> NONEXISTENT, AlreadyExists ->
  ALREADYEXISTS, SieveScriptActive -> ACTIVE, SieveQuotaExceeded -> QUOTA/MAXSCRIPTS, QUOTA/MAXSIZE or
  QUOTA; a store failure -> TRYLATER.
- The connection loop is `net.driver.LineSession`'s (deadlines, STARTTLS with the plaintext drop, shutdown,
  eviction). Before login `[limits] login_timeout` applies, after it `[managesieve] timeout` per command;
  the server's goodbyes are BYE responses ("(TRYLATER)" at shutdown and for an eviction).
- One log line per session: client, account, TLS, scripts stored, result, duration.
"""

from __future__ import annotations

import logging
import time

from postoffice.auth import Authenticator
from postoffice.managesieve import protocol as p
from postoffice.managesieve.settings import ManageSieveConfig
from postoffice.net.driver import Ending, LineSession
from postoffice.net.listener import Connection, ConnectionClosedError
from postoffice.sieve.checker import SUPPORTED
from postoffice.sieve.interpreter import MAX_REDIRECTS
from postoffice.sieve.settings import SieveConfig
from postoffice.store import (
    AlreadyExists,
    MailStore,
    NotFound,
    SieveLimits,
    SieveQuotaExceeded,
    SieveScript,
    SieveScriptActive,
    StoreError,
)

log = logging.getLogger("postoffice.managesieve")

#: The SIEVE capability: the extensions a script may require (comparators are not listed, RFC 5804 1.7).
SIEVE_EXTENSIONS = tuple(sorted(name for name in SUPPORTED if not name.startswith("comparator-")))


async def serve_managesieve(
    conn: Connection,
    *,
    hostname: str,
    store: MailStore,
    authenticator: Authenticator,
    config: ManageSieveConfig,
    sieve: SieveConfig,
) -> None:
    """Run one ManageSieve session on `conn` until it ends."""
    session = ManageSieveSession(
        conn, hostname=hostname, store=store, authenticator=authenticator, config=config, sieve=sieve
    )
    await session.run()


class ManageSieveSession(LineSession[p.ManageSieveProtocol]):
    """One ManageSieve session (see the module notes)."""

    def __init__(
        self,
        conn: Connection,
        *,
        hostname: str,
        store: MailStore,
        authenticator: Authenticator,
        config: ManageSieveConfig,
        sieve: SieveConfig,
    ) -> None:
        self.conn = conn
        self.store = store
        self.authenticator = authenticator
        self.config = config
        self.limits = SieveLimits(sieve.max_scripts, sieve.max_script_size, sieve.max_storage)
        self.account_id: int | None = None
        self.account = "-"
        self.stored = 0
        self.result = "connection closed"
        self.started = time.monotonic()
        self.proto = p.ManageSieveProtocol(
            p.ManageSieveSettings(
                hostname=hostname,
                implementation="Postoffice",
                sieve_extensions=SIEVE_EXTENSIONS,
                max_errors=config.max_errors,
                starttls_available=conn.starttls_available,
                plaintext_auth_allowed=authenticator.plaintext_allowed(False),
                max_script_size=sieve.max_script_size,
                max_redirects=MAX_REDIRECTS,
            ),
            tls_active=conn.tls_active,
            channel_binding=conn.channel_binding,
        )

    async def run(self) -> None:
        self.proto.greeting()
        try:
            await self.drive()
        except ConnectionClosedError as exc:
            self.result = f"connection lost ({exc})" if str(exc) else "connection lost"
        except Exception:
            # the one place an unexpected failure becomes a reply: never a traceback to the peer
            log.exception("managesieve client %s: session failed", self.conn.peer_ip)
            self.result = "internal error"
            self.proto.close("Internal server error.", "TRYLATER")
            try:
                await self.conn.write(self.proto.data_to_send())
            except ConnectionClosedError:
                pass
        finally:
            log.info(
                "managesieve session client=%s account=%s tls=%s stored=%d result=%r duration=%.3fs",
                self.conn.peer_ip,
                self.account,
                self.conn.tls_info or "no",
                self.stored,
                self.result,
                time.monotonic() - self.started,
            )

    # ------------------------------------------------------------------------------- net.driver hooks

    def read_timeout(self) -> tuple[float, bool]:
        return self.config.timeout, True

    def goodbye(self, ending: Ending, timeout: float) -> None:
        self.result = ending.value
        if ending is Ending.TIMEOUT:
            self.proto.close("Disconnected for inactivity.")
        else:
            self.proto.close(
                "Server shutting down." if ending is Ending.SHUTDOWN else "Try again later.", "TRYLATER"
            )

    async def handle(self, event: p.Event) -> None:
        if isinstance(event, p.Login):
            await self._login(event)
        elif isinstance(event, p.ScramSecretNeeded):
            self.proto.scram_secret(
                await self.authenticator.scram_secret(event.username, client_ip=self.conn.peer_ip)
            )
        elif isinstance(event, p.ScriptRequest):
            await self._script(event)
        elif isinstance(event, p.Unauthenticated):
            self.account_id, self.account = None, "-"
        elif isinstance(event, p.Logout):
            self.result = "LOGOUT"
        elif isinstance(event, p.ConnectionClosed):
            self.result = "closed by client"

    async def _login(self, event: p.Login) -> None:
        tls, ip = self.conn.tls_active, self.conn.peer_ip
        if event.scram is not None:
            result = await self.authenticator.scram_finish(
                protocol="managesieve", client_ip=ip, outcome=event.scram, mechanism=event.mechanism, tls=tls
            )
        elif event.credentials is not None:
            result = await self.authenticator.login_sasl(
                protocol="managesieve",
                client_ip=ip,
                credentials=event.credentials,
                mechanism=event.mechanism,
                tls=tls,
            )
        else:  # the core makes no other Login
            self.proto.login_result(False, "Authentication failed.")
            return
        if result.ok and result.account is not None:
            self.account_id, self.account = result.account.id, result.account.address
            self.conn.mark_logged_in()
            self.proto.login_result(True)
        elif result.status in ("locked-out", "unavailable"):
            self.proto.login_result(False, result.reason or "Try again later.", "TRYLATER")
        else:
            self.proto.login_result(False, "Authentication failed.")

    async def _script(self, event: p.ScriptRequest) -> None:
        proto, account = self.proto, self.account_id
        if account is None:  # the core asks only after a login
            proto.answer_no("Authenticate first.")
            return
        command, names = event.command, event.names
        try:
            if command == "LISTSCRIPTS":
                scripts = await self.store.list_sieve_scripts(account)
                proto.answer_list([(s.name, s.active) for s in scripts])
            elif command == "GETSCRIPT":
                found = await self.store.get_sieve_script(account, names[0])
                if found is None:
                    proto.answer_no("There is no such script.", "NONEXISTENT")
                else:
                    proto.answer_script(found.text)
            elif command == "PUTSCRIPT":
                await self.store.put_sieve_script(account, names[0], event.script, self.limits)
                self.stored += 1
                proto.answer_ok("Putscript completed.")
            elif command == "SETACTIVE":
                await self.store.activate_sieve_script(account, names[0] or None)
                proto.answer_ok("Setactive completed.")
            elif command == "DELETESCRIPT":
                await self.store.delete_sieve_script(account, names[0])
                proto.answer_ok("Deletescript completed.")
            elif command == "RENAMESCRIPT":
                await self.store.rename_sieve_script(account, names[0], names[1])
                proto.answer_ok("Renamescript completed.")
            elif command == "HAVESPACE":
                refused = self._room(await self.store.list_sieve_scripts(account), names[0], event.size)
                if refused is None:
                    proto.answer_ok("Putscript would succeed.")
                else:
                    proto.answer_no(*refused)
            else:  # the core sends no other
                proto.answer_no("Not implemented.")
        except NotFound:
            proto.answer_no("There is no such script.", "NONEXISTENT")
        except AlreadyExists:
            proto.answer_no("A script of that name exists already.", "ALREADYEXISTS")
        except SieveScriptActive:
            proto.answer_no("The active script cannot be deleted; deactivate it first.", "ACTIVE")
        except SieveQuotaExceeded as exc:
            code = {"maxscripts": "QUOTA/MAXSCRIPTS", "maxsize": "QUOTA/MAXSIZE"}.get(exc.kind, "QUOTA")
            proto.answer_no(str(exc)[:1].upper() + str(exc)[1:] + ".", code)
        except StoreError as exc:
            log.error("managesieve client %s: %s failed: %s", self.conn.peer_ip, command, exc)
            proto.answer_no("The scripts cannot be reached now; try again later.", "TRYLATER")

    def _room(self, existing: list[SieveScript], name: str, size: int) -> tuple[str, str] | None:
        """HAVESPACE (section 2.5): why a PUTSCRIPT of `name` with `size` octets would be refused, or None."""
        others = [s for s in existing if s.name != name]
        limits = self.limits
        if size > limits.max_script_octets:
            return "The script is larger than a script may be.", "QUOTA/MAXSIZE"
        if len(others) == len(existing) and len(existing) + 1 > limits.max_scripts:
            return f"An account may have at most {limits.max_scripts} scripts.", "QUOTA/MAXSCRIPTS"
        if sum(s.octets for s in others) + size > limits.max_account_octets:
            return "The account's scripts would be larger than they may be together.", "QUOTA"
        return None
