"""Independent DKIM verifiers from Debian, for checking the signatures of our outbound mail with code that is
not ours (issue 13: "our outbound mail verified by an independent verifier"), both asking a DNS server of the
test's own on loopback:

- Mail::DKIM (Perl, package libmail-dkim-perl): a small Perl program gives Mail::DKIM::DNS a Net::DNS
  resolver pointed at 127.0.0.1 and the test DNS server's port, and prints one line per signature: result,
  d=, s=, a= and the detail. Debian 12's version (1.20230212) verifies RSA only; it reports an Ed25519
  signature as "invalid (unsupported algorithm ed25519-sha256)".
- OpenDKIM (package opendkim-tools): `opendkim-testmsg` verifies a message on standard input with
  libopendkim, RSA and Ed25519, and exits 0 when it verifies. libopendkim asks the resolver of
  /etc/resolv.conf on port 53, which no test may change; so it runs in namespaces of its own (`unshare
  --user --map-root-user --net --mount`, unprivileged user namespaces, as tests/support/small_disk.py does:
  docs/decisions/0031): a private loopback interface, a DNS server on its port 53 serving the records given,
  and a resolv.conf naming it bind-mounted over /etc/resolv.conf. Nothing outside the namespaces changes.
  Without user namespaces the helper fails and says what to enable; it never skips.

`python -m tests.support.dkim_verifiers opendkim RECORDS.json` is the part that runs inside the namespaces.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.support.dns_server import DnsServer, Record, Zones

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60
#: in /usr/sbin, which an ordinary user's PATH may not have
OPENDKIM_TESTMSG = shutil.which("opendkim-testmsg") or "/usr/sbin/opendkim-testmsg"

MAIL_DKIM = r"""
use strict;
use warnings;
use Net::DNS;
use Mail::DKIM::DNS;
use Mail::DKIM::Verifier;
my $port = shift @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(
    nameservers => ['127.0.0.1'], port => $port, recurse => 1, retry => 2,
    udp_timeout => 5, tcp_timeout => 5));
my $dkim = Mail::DKIM::Verifier->new();
binmode STDIN;
while (my $line = <STDIN>) {
    $line =~ s/\r?\n\z/\r\n/;
    $dkim->PRINT($line);
}
$dkim->CLOSE;
foreach my $signature ($dkim->signatures) {
    printf "%s\t%s\t%s\t%s\t%s\n", $signature->result, $signature->domain, $signature->selector,
        $signature->algorithm, $signature->result_detail // '';
}
"""


def mail_dkim(message: bytes, dns_port: int) -> list[tuple[str, str, str, str, str]]:
    """Mail::DKIM's result of each signature of `message`: (result, domain, selector, algorithm, detail)."""
    if shutil.which("perl") is None:
        raise AssertionError("perl is missing: install libmail-dkim-perl (make deps)")
    proc = subprocess.run(
        ["perl", "-e", MAIL_DKIM, str(dns_port)],
        input=message,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            "Mail::DKIM failed (is libmail-dkim-perl installed? make deps): "
            + proc.stderr.decode(errors="replace")
        )
    found = []
    for line in proc.stdout.decode().splitlines():
        result, domain, selector, algorithm, detail = (line.split("\t", 4) + [""] * 5)[:5]
        found.append((result, domain, selector, algorithm, detail))
    return found


def opendkim(message: bytes, records: Sequence[Record]) -> tuple[int, str]:
    """`opendkim-testmsg`'s verification of `message`, with DNS serving `records` (module notes): its exit
    status (0: verified) and what it said on stderr."""
    if shutil.which("unshare") is None or not Path(OPENDKIM_TESTMSG).exists():
        raise AssertionError("unshare or opendkim-testmsg is missing: install opendkim-tools (make deps)")
    with tempfile.TemporaryDirectory(prefix="postoffice-opendkim-") as directory:
        zone = Path(directory) / "records.json"
        zone.write_text(json.dumps([list(record) for record in records]))
        proc = subprocess.run(
            [
                "unshare",
                "--user",
                "--map-root-user",
                "--net",
                "--mount",
                sys.executable,
                "-m",
                "tests.support.dkim_verifiers",
                "opendkim",
                str(zone),
            ],
            input=message,
            capture_output=True,
            timeout=TIMEOUT,
            cwd=ROOT,
            check=False,
        )
    said = proc.stderr.decode(errors="replace")
    if proc.returncode == 125 or "unshare failed" in said or "unshare:" in said:
        raise AssertionError(
            "opendkim-testmsg runs in a user and network namespace of its own, which this system refuses "
            f"(enable unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1): {said}"
        )
    lines = [line for line in said.splitlines() if line.startswith("status ")]
    if not lines:
        raise AssertionError(f"the namespace helper failed: {said}")
    return int(lines[-1].split()[1]), said


# -- inside the namespaces -----------------------------------------------------------------------------------

_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def _loopback_up() -> None:
    """A new network namespace has its loopback interface down: bring it up (ioctl, no iproute2 needed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))


def _run_opendkim(records_file: str) -> int:
    records = [tuple(record) for record in json.loads(Path(records_file).read_text())]
    _loopback_up()
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as conf:
        conf.write("nameserver 127.0.0.1\noptions attempts:2 timeout:2\n")
    subprocess.run(["mount", "--bind", conf.name, "/etc/resolv.conf"], check=True)
    message = sys.stdin.buffer.read()
    with DnsServer(Zones(records), port=53):
        proc = subprocess.run(
            [OPENDKIM_TESTMSG], input=message, capture_output=True, timeout=TIMEOUT, check=False
        )
    sys.stderr.write(proc.stderr.decode(errors="replace"))
    sys.stderr.write(f"status {proc.returncode}\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["opendkim"]:
        sys.exit(_run_opendkim(sys.argv[2]))
    sys.exit(f"usage: {sys.argv[0]} opendkim RECORDS.json")
