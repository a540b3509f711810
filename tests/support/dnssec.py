"""A DNSSEC-signed piece of the DNS on loopback, with a real validating resolver in front of it, for tests.

DANE (RFC 7672) hangs on one bit: whether the recursive resolver validated an answer (AD, RFC 4035 section
3.2.3, RFC 6840 section 5.7). That is only worth testing against a real validator, so this starts two Debian
daemons in a temporary directory, both in the foreground (`-d`), as whatever user runs the tests (no chroot,
no privilege drop), on ephemeral loopback ports (never 53, so a system nsd or unbound that a package's
postinst started is neither used nor disturbed):

- `nsd` (authoritative) serves the test zones. Zones in `signed` are signed with `ldns-signzone` (NSEC, one
  ECDSA P-256 key per zone made by `ldns-keygen`, signatures valid from an hour ago to a week from now).
- `unbound` (recursive, validating) reaches every test zone through a `stub-zone` pointing at the nsd. A
  signed zone whose parent is not a signed test zone gets a `trust-anchor` (its DS); a zone inside another
  test zone is delegated from it (NS and glue, plus a DS when both are signed), so that the chain of trust is
  real: a signed child of a signed parent is secure through its DS, an unsigned child of a signed parent is
  provably insecure (the parent's NSEC denies the DS), a zone outside every trust anchor is insecure. Every
  other name is refused (`local-zone: "." refuse`): unbound never asks the internet.

Bogus data: `bogus` maps a zone to records added to its file after signing. They have no valid signature, so
unbound answers SERVFAIL for their RRset (a record added to a signed RRset spoils that RRset's signature; a
new RRset has none), as it does for any answer an attacker forged. unbound does not make up NXDOMAIN answers
from NSEC records it has seen (`aggressive-nsec: no`, RFC 8198), so a bogus record at a new name is asked
for, whatever was asked before.

Where AppArmor confines the Debian daemons to their own files, copies of the programs in the temporary
directory run instead (`_unconfined`).

Usage (see tests/net/test_dns_dnssec.py):

    with DnssecDns(
        {
            "secure.test.": [
                ("secure.test.", "MX", "10 mx.secure.test."),
                ("mx.secure.test.", "A", "192.0.2.1"),
            ],
            "plain.test.": [("plain.test.", "A", "192.0.2.2")],
        },
        signed={"secure.test."},
        bogus={"secure.test.": [("forged.secure.test.", "A", "192.0.2.66")]},
    ) as dns:
        resolver = dns.resolver()  # DnsResolver(["127.0.0.1"], port=dns.resolver_port, dnssec=True)

Start-up (keys, signing, both daemons, readiness by querying each daemon until it answers) takes a few tenths
of a second; share one instance per test module.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query

from postoffice.net.dns import DnsResolver
from tests.support.dns_server import Record

__all__ = ["DnssecDns", "Record"]

NSD = "/usr/sbin/nsd"
UNBOUND = "/usr/sbin/unbound"
LDNS_KEYGEN = "/usr/bin/ldns-keygen"
LDNS_SIGNZONE = "/usr/bin/ldns-signzone"
# the Debian packages that provide the four programs above (the Makefile's DEBIAN_PACKAGES has them)
DEBIAN_PACKAGES = "nsd unbound ldnsutils"

_START_TIMEOUT = 15.0  # seconds for one daemon to answer its first query (a loaded CI machine)


class DnssecDnsError(RuntimeError):
    """A daemon or tool failed; the text carries its output."""


def _absolute(name: str) -> str:
    return dns.name.from_text(name).to_text()


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now (the daemon binds it a moment later; a rare
    clash makes that start fail, and `_start` tries again with another port)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise OSError("no free loopback port for UDP and TCP")


class _Daemon:
    """One foreground daemon in its own process group, output to a log file."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM and wait (nsd stops its server and xfrd children itself). One that does not stop in time
        gets SIGKILL, with its whole process group (its own, made at start; the group is still there, as its
        leader has not been reaped, so the number names nothing else)."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def _unconfined(program: str, directory: Path) -> str:
    """The program to run: itself, or a copy in `directory` when an AppArmor profile confines it. Debian's
    unbound package installs one (/etc/apparmor.d/usr.sbin.unbound) that lets it read only /etc/unbound and
    /var/lib/unbound, not a configuration in a temporary directory; AppArmor is on by default on Debian
    machines (not in most containers). A profile attaches to the program's path, so a copy elsewhere runs
    unconfined, as the tests' own daemon should. Where the copy cannot run (a noexec /tmp), the original."""
    profile = Path("/etc/apparmor.d") / program.lstrip("/").replace("/", ".")
    try:
        enabled = Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        enabled = False
    if not (enabled and profile.exists()):
        return program
    copy = directory / Path(program).name
    shutil.copy2(program, copy)
    try:
        subprocess.run([str(copy), "-h"], capture_output=True, timeout=10, check=False)
    except OSError:
        return program
    return str(copy)


def _wait_until_answering(daemon: _Daemon, port: int, qname: str) -> None:
    """Query until the daemon answers anything at all (readiness: it has bound its port and loaded its
    configuration); fails early when it exits."""
    query = dns.message.make_query(qname, "SOA")
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise DnssecDnsError(f"{daemon.name} exited ({daemon.proc.returncode}):\n{daemon.output()}")
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.1)
            return
        except (dns.exception.Timeout, OSError):
            continue
    raise DnssecDnsError(f"{daemon.name} did not answer within {_START_TIMEOUT} s:\n{daemon.output()}")


class DnssecDns:
    """The zones (name -> records; names absolute), signed or not, behind a validating resolver on
    `resolver_port`; the authoritative server itself is on `authority_port`. A context manager; `start()` and
    `stop()` also work. Every zone gets an SOA, an NS "ns.<zone>" and that name's A record (127.0.0.1)."""

    def __init__(
        self,
        zones: Mapping[str, Iterable[Record]],
        signed: Iterable[str] = (),
        bogus: Mapping[str, Iterable[Record]] | None = None,
        *,
        ttl: int = 60,
    ) -> None:
        self.zones = {_absolute(zone): list(records) for zone, records in zones.items()}
        self.signed = {_absolute(zone) for zone in signed}
        self.bogus = {_absolute(zone): list(records) for zone, records in (bogus or {}).items()}
        for zone in self.signed | set(self.bogus):
            if zone not in self.zones:
                raise ValueError(f"{zone} is not one of the zones")
        self.ttl = ttl
        self.authority_port = 0
        self.resolver_port = 0
        #: zone -> its DS record text ("<zone> IN DS ...") for the signed zones
        self.ds: dict[str, str] = {}
        self._dir: Path | None = None
        self._daemons: list[_Daemon] = []

    # --- zone files --------------------------------------------------------------------------------------

    def _parent(self, zone: str) -> str | None:
        """The closest enclosing test zone."""
        name = dns.name.from_text(zone)
        while len(name) > 1:
            name = name.parent()
            if name.to_text() in self.zones:
                return name.to_text()
        return None

    def _trust_anchors(self) -> list[str]:
        """Signed zones without a signed parent among the test zones: islands of trust, anchored by their
        DS. (A signed zone below an unsigned test zone is also anchored: its parent cannot vouch for it.)"""
        return [zone for zone in sorted(self.signed) if self._parent(zone) not in self.signed]

    def _keygen(self, directory: Path, zone: str) -> str:
        result = subprocess.run(
            [LDNS_KEYGEN, "-a", "ECDSAP256SHA256", "-k", zone],
            cwd=directory,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DnssecDnsError(f"ldns-keygen for {zone} failed: {result.stderr}")
        base = result.stdout.strip()
        ds = (directory / f"{base}.ds").read_text().split(";")[0].split()
        # "<zone> <ttl>? IN DS <tag> <alg> <digest type> <digest>": keep the owner and the rdata
        self.ds[zone] = f"{ds[0]} IN DS {' '.join(ds[-4:])}"
        return base

    def _zone_text(self, zone: str) -> str:
        ttl = self.ttl
        lines = [
            f"{zone} {ttl} IN SOA ns.{zone} hostmaster.{zone} 1 3600 600 86400 {ttl}",
            f"{zone} {ttl} IN NS ns.{zone}",
            f"ns.{zone} {ttl} IN A 127.0.0.1",
        ]
        for child in self.zones:
            if child != zone and self._parent(child) == zone:
                lines.append(f"{child} {ttl} IN NS ns.{child}")
                lines.append(f"ns.{child} {ttl} IN A 127.0.0.1")  # glue
                if child in self.signed and zone in self.signed:
                    lines.append(self.ds[child].replace(" IN DS ", f" {ttl} IN DS ", 1))
        lines += [f"{_absolute(name)} {ttl} IN {rdtype} {text}" for name, rdtype, text in self.zones[zone]]
        return "\n".join(lines) + "\n"

    def _write_zones(self, directory: Path) -> dict[str, Path]:
        keys = {zone: self._keygen(directory, zone) for zone in sorted(self.signed)}
        files: dict[str, Path] = {}
        now = int(time.time())
        for number, zone in enumerate(sorted(self.zones)):
            path = directory / f"zone{number}.zone"
            path.write_text(self._zone_text(zone))
            if zone in self.signed:
                result = subprocess.run(
                    [
                        LDNS_SIGNZONE,
                        "-i",
                        str(now - 3600),
                        "-e",
                        str(now + 7 * 86400),
                        "-o",
                        zone,
                        "-f",
                        f"{path}.signed",
                        str(path),
                        keys[zone],
                    ],
                    cwd=directory,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if result.returncode != 0:
                    raise DnssecDnsError(f"ldns-signzone for {zone} failed: {result.stderr}{result.stdout}")
                path = Path(f"{path}.signed")
            if zone in self.bogus:
                extra = [f"{_absolute(n)} {self.ttl} IN {t} {text}" for n, t, text in self.bogus[zone]]
                with open(path, "a") as out:
                    out.write("\n".join(extra) + "\n")
            files[zone] = path
        return files

    # --- daemons -----------------------------------------------------------------------------------------

    def _nsd_conf(self, directory: Path, port: int, files: Mapping[str, Path]) -> Path:
        conf = directory / "nsd.conf"
        zones = "".join(f'zone:\n\tname: "{zone}"\n\tzonefile: "{path}"\n' for zone, path in files.items())
        conf.write_text(
            "server:\n"
            f"\tip-address: 127.0.0.1@{port}\n"
            f"\tport: {port}\n"
            "\tdo-ip6: no\n"
            "\tserver-count: 1\n"
            '\tusername: ""\n'
            '\tchroot: ""\n'
            f'\tzonesdir: "{directory}"\n'
            '\tdatabase: ""\n'
            f'\tzonelistfile: "{directory}/zone.list"\n'
            f'\txfrdfile: "{directory}/xfrd.state"\n'
            f'\txfrdir: "{directory}"\n'
            f'\tpidfile: "{directory}/nsd.pid"\n'
            "\tverbosity: 1\n"
            "\thide-version: yes\n"
            "remote-control:\n"
            "\tcontrol-enable: no\n" + zones
        )
        return conf

    def _unbound_conf(self, directory: Path, port: int) -> Path:
        conf = directory / "unbound.conf"
        lines = [
            "server:",
            f"\tinterface: 127.0.0.1@{port}",
            f"\tport: {port}",
            "\tdo-ip4: yes",
            "\tdo-ip6: no",
            "\tdo-udp: yes",
            "\tdo-tcp: yes",
            "\tnum-threads: 1",
            '\tusername: ""',
            '\tchroot: ""',
            f'\tdirectory: "{directory}"',
            f'\tpidfile: "{directory}/unbound.pid"',
            '\tlogfile: ""',
            "\tuse-syslog: no",
            "\tverbosity: 1",
            "\tval-log-level: 2",
            "\tlog-servfail: yes",
            "\tdo-not-query-localhost: no",
            "\taccess-control: 127.0.0.0/8 allow",
            "\tqname-minimisation: no",
            # no NXDOMAIN made up from cached NSEC records (RFC 8198): a bogus record at a new name must reach
            # the validator whatever the tests asked before
            "\taggressive-nsec: no",
            "\tharden-dnssec-stripped: yes",
            "\ttrust-anchor-signaling: no",
            "\troot-key-sentinel: no",
            "\tso-reuseport: no",
            '\tmodule-config: "validator iterator"',
            # never the internet: every name outside the test zones is refused
            '\tlocal-zone: "." refuse',
        ]
        lines += [f'\tlocal-zone: "{zone}" transparent' for zone in sorted(self.zones)]
        lines += [f'\ttrust-anchor: "{self.ds[zone]}"' for zone in self._trust_anchors()]
        lines += ["remote-control:", "\tcontrol-enable: no"]
        for zone in sorted(self.zones):
            lines += ["stub-zone:", f'\tname: "{zone}"', f"\tstub-addr: 127.0.0.1@{self.authority_port}"]
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _start(
        self, name: str, make_argv: Callable[[int], list[str]], directory: Path
    ) -> tuple[_Daemon, int]:
        """Start a daemon on a fresh free port (three tries, for the rare port clash) and wait until it
        answers a query for the first zone's SOA."""
        first_zone = sorted(self.zones)[0]
        error: DnssecDnsError | None = None
        for attempt in range(3):
            port = _free_port()
            daemon = _Daemon(name, make_argv(port), directory / f"{name}{attempt}.log")
            try:
                _wait_until_answering(daemon, port, first_zone)
            except DnssecDnsError as exc:
                daemon.stop()
                error = exc
                continue
            return daemon, port
        assert error is not None
        raise error

    def start(self) -> DnssecDns:
        for program in (NSD, UNBOUND, LDNS_KEYGEN, LDNS_SIGNZONE):
            if not os.access(program, os.X_OK):
                raise DnssecDnsError(f"{program} is missing: install the Debian packages {DEBIAN_PACKAGES}")
        if not self.zones:
            raise ValueError("no zones")
        directory = Path(tempfile.mkdtemp(prefix="dnssec-"))
        self._dir = directory
        try:
            files = self._write_zones(directory)
            nsd_program = _unconfined(NSD, directory)
            nsd, self.authority_port = self._start(
                "nsd",
                lambda port: [nsd_program, "-d", "-c", str(self._nsd_conf(directory, port, files))],
                directory,
            )
            self._daemons.append(nsd)
            unbound_program = _unconfined(UNBOUND, directory)
            unbound, self.resolver_port = self._start(
                "unbound",
                lambda port: [unbound_program, "-d", "-c", str(self._unbound_conf(directory, port))],
                directory,
            )
            self._daemons.append(unbound)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for daemon in reversed(self._daemons):
            daemon.stop()
        self._daemons.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def logs(self) -> str:
        """The daemons' output so far (for a failing test's message)."""
        return "\n".join(f"--- {d.name}\n{d.output()}" for d in self._daemons)

    def resolver(
        self, *, dnssec: bool = True, cache_size: int = 0, timeout: float = 2.0, lifetime: float = 5.0
    ) -> DnsResolver:
        """A `DnsResolver` asking the validating resolver."""
        return DnsResolver(
            ["127.0.0.1"],
            port=self.resolver_port,
            timeout=timeout,
            lifetime=lifetime,
            cache_size=cache_size,
            dnssec=dnssec,
        )

    def ask(self, name: str, rdtype: str) -> dns.message.Message:
        """One raw query to the validating resolver with AD set (RFC 6840 section 5.7), for harness checks."""
        query = dns.message.make_query(name, rdtype)
        query.flags |= dns.flags.AD
        return dns.query.udp(query, "127.0.0.1", port=self.resolver_port, timeout=2)

    def __enter__(self) -> DnssecDns:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
