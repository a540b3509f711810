"""A small authoritative DNS server on loopback for tests: the public internet's DNS, rebuilt locally.

Outbound delivery (MX lookup, A/AAAA fallback, null MX; RFC 5321 section 5, RFC 7505) is tested against
real DNS traffic over UDP and TCP, answered from in-memory zones. Built on dnspython's message and rdata
classes; only the socket loop is here. Serves until `stop()`; binds 127.0.0.1 on an ephemeral port.

For the checks that must cope with a broken DNS (SPF temperror, RFC 7208 section 5 and 4.6.4), a name can be
made to `never_answer` (the client times out), and `follow_cnames` answers through CNAME chains the way a
recursive resolver does (the chain and the records at its end; a loop is answered with the chain up to it).
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterable

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Record = tuple[str, str, str]  # (name, type, rdata text), e.g. ("example.org.", "MX", "10 mx1.example.org.")


class Zones:
    """Records by (owner name, type). Names are absolute; every name under a zone apex we hold that has no
    records at all answers NXDOMAIN, a name with other types answers NOERROR with no answer (NODATA).

    `follow_cnames`: a query for another type at a name that holds a CNAME is answered with the CNAME and,
    from the target on, what the target answers (RFC 1034 section 3.6.2), as a recursive resolver does. Off by
    default: then a CNAME is only an answer to a CNAME query."""

    def __init__(self, records: Iterable[Record] = (), ttl: int = 60, *, follow_cnames: bool = False) -> None:
        self.ttl = ttl
        self.follow_cnames = follow_cnames
        self._rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
        # name -> the types it never answers for (None: every type it has no records of)
        self._silent: dict[dns.name.Name, set[int] | None] = {}
        self._rcodes: dict[dns.name.Name, dns.rcode.Rcode] = {}
        self.queries: list[tuple[str, str]] = []
        for record in records:
            self.add(*record)

    def add(self, name: str, rdtype: str, text: str) -> None:
        owner = dns.name.from_text(name)
        kind = dns.rdatatype.from_text(rdtype)
        rrset = self._rrsets.get((owner, kind))
        if rrset is None:
            rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, kind)
            self._rrsets[(owner, kind)] = rrset
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, kind, text), self.ttl)

    def add_rdata(self, name: str | dns.name.Name, rdata: dns.rdata.Rdata) -> None:
        """A record built by the caller: rdata that has no convenient text form (TXT strings of raw bytes)."""
        owner = dns.name.from_text(name) if isinstance(name, str) else name
        rrset = self._rrsets.get((owner, rdata.rdtype))
        if rrset is None:
            rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, rdata.rdtype)
            self._rrsets[(owner, rdata.rdtype)] = rrset
        rrset.add(rdata, self.ttl)

    def never_answer(self, name: str | dns.name.Name, rdtype: str | None = None) -> None:
        """Queries for `name` get no reply at all, so the client times out: for type `rdtype`, or without it
        for every type the name has no records of (a server that answers what it holds, hangs on the rest)."""
        owner = dns.name.from_text(name) if isinstance(name, str) else name
        if rdtype is None:
            self._silent[owner] = None
            return
        kinds = self._silent.setdefault(owner, set())
        if kinds is not None:
            kinds.add(dns.rdatatype.from_text(rdtype))

    def _is_silent(self, name: dns.name.Name, kind: int) -> bool:
        if name not in self._silent:
            return False
        kinds = self._silent[name]
        return (name, kind) not in self._rrsets if kinds is None else kind in kinds

    def clear(self, name: str) -> None:
        owner = dns.name.from_text(name)
        for key in [k for k in self._rrsets if k[0] == owner]:
            del self._rrsets[key]
        self._rcodes.pop(owner, None)

    def fail(self, name: str, rcode: str = "SERVFAIL") -> None:
        """Answer every query for `name` (any type) with `rcode` (SERVFAIL, REFUSED, ...) and no records: a
        broken zone or server, for the temporary-failure paths of the DNS checks."""
        self._rcodes[dns.name.from_text(name)] = dns.rcode.from_text(rcode)

    def answer(self, wire: bytes) -> bytes:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return b""  # not a DNS message: no answer, like a real server dropping garbage
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        self.queries.append((question.name.to_text(), dns.rdatatype.to_text(question.rdtype)))
        rcode = self._rcodes.get(question.name)
        if rcode is not None:
            response.set_rcode(rcode)
            return response.to_wire()
        name, kind = question.name, question.rdtype
        chased: set[dns.name.Name] = set()
        while True:
            if self._is_silent(name, kind):
                return b""  # no reply: the client times out
            rrset = self._rrsets.get((name, kind))
            if rrset is not None:
                response.answer.append(rrset)
                break
            cname = None
            if self.follow_cnames and kind != dns.rdatatype.CNAME:
                cname = self._rrsets.get((name, dns.rdatatype.CNAME))
            if cname is None:
                if not any(owner == name for owner, _ in self._rrsets):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                break
            if name in chased:
                break  # a CNAME loop: the chain up to it, each CNAME once
            chased.add(name)
            response.answer.append(cname)
            name = next(iter(cname)).target
        return response.to_wire()


class _Udp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        server = self.server
        assert isinstance(server, _UdpServer)
        reply = server.zones.answer(data)
        if reply:
            sock.sendto(reply, self.client_address)


class _Tcp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(10)
        try:
            header = conn.recv(2, socket.MSG_WAITALL)
            if len(header) < 2:
                return
            (length,) = struct.unpack("!H", header)
            data = conn.recv(length, socket.MSG_WAITALL)
            server = self.server
            assert isinstance(server, _TcpServer)
            reply = server.zones.answer(data)
            if reply:
                conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            pass


class _UdpServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], zones: Zones) -> None:
        self.zones = zones
        super().__init__(address, _Udp)


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], zones: Zones) -> None:
        self.zones = zones
        super().__init__(address, _Tcp)


class DnsServer:
    """UDP and TCP on the same loopback port. `with DnsServer(zones) as dns: dns.port`"""

    def __init__(self, zones: Zones, host: str = "127.0.0.1", port: int = 0) -> None:
        self.zones = zones
        self.host = host
        # bind UDP first on an ephemeral port (or `port`: 53 in a network namespace of a test's own), then TCP
        # on the same number (retry on the rare clash)
        for _ in range(1 if port else 20):
            udp = _UdpServer((host, port), zones)
            bound = udp.server_address[1]
            try:
                tcp = _TcpServer((host, bound), zones)
            except OSError:
                udp.server_close()
                continue
            break
        else:
            raise OSError("no free port for the test DNS server")
        self.port = bound
        self._servers = (udp, tcp)
        self._threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in self._servers]

    def start(self) -> DnsServer:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
