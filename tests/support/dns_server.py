"""A small authoritative DNS server on loopback for tests: the public internet's DNS, rebuilt locally.

Outbound delivery (MX lookup, A/AAAA fallback, null MX; RFC 5321 section 5, RFC 7505) is tested against
real DNS traffic over UDP and TCP, answered from in-memory zones. Built on dnspython's message and rdata
classes; only the socket loop is here. Serves until `stop()`; binds 127.0.0.1 on an ephemeral port.
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
    records at all answers NXDOMAIN, a name with other types answers NOERROR with no answer (NODATA)."""

    def __init__(self, records: Iterable[Record] = (), ttl: int = 60) -> None:
        self.ttl = ttl
        self._rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
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

    def clear(self, name: str) -> None:
        owner = dns.name.from_text(name)
        for key in [k for k in self._rrsets if k[0] == owner]:
            del self._rrsets[key]

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
        rrset = self._rrsets.get((question.name, question.rdtype))
        if rrset is not None:
            response.answer.append(rrset)
        elif not any(owner == question.name for owner, _ in self._rrsets):
            response.set_rcode(dns.rcode.NXDOMAIN)
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

    def __init__(self, zones: Zones, host: str = "127.0.0.1") -> None:
        self.zones = zones
        self.host = host
        # bind UDP first on an ephemeral port, then TCP on the same number (retry on the rare clash)
        for _ in range(20):
            udp = _UdpServer((host, 0), zones)
            port = udp.server_address[1]
            try:
                tcp = _TcpServer((host, port), zones)
            except OSError:
                udp.server_close()
                continue
            break
        else:
            raise OSError("no free port for the test DNS server")
        self.port = port
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
