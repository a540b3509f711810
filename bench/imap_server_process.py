"""An IMAP server for benchmarks, in its own process: `serve_imap` behind a `ListenerGroup` on 127.0.0.1
(ephemeral ports: "imap" without TLS, "imaps" with implicit TLS), a real store, a real `Authenticator`
(`allow_plaintext_auth` on, so the plaintext port can be measured) and a real certificate.

It builds the listeners the way tests/imap/conftest.py does, so that benchmarks do not depend on whether
`postoffice run` starts IMAP yet. Prints one line `ports imap=N imaps=M` when it accepts connections, and
stops on SIGTERM or SIGINT (sessions get up to 5 s, then the store is closed).

With `--profile PATH`, from SIGUSR1 on (so that startup, the first login's argon2 run and warm-up can be left
out) every thread (the event loop and the store's reader and writer threads) runs under cProfile measuring
thread CPU time (waits cost nothing); at SIGTERM, before the shutdown, the statistics are written to PATH
(all threads), PATH.loop (the event loop) and PATH.threads (the store's threads).

    .venv/bin/python bench/imap_server_process.py --store mail.sqlite3 --cert cert.pem --key key.pem
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from postoffice.auth import Authenticator
from postoffice.config import AuthConfig
from postoffice.imap.session import ImapSettings, refuse_imap_connection, serve_imap
from postoffice.net.listener import Connection, ConnectionLimits, ListenerGroup, ListenerSpec
from postoffice.net.tls import TlsContexts

_thread_profiles: list[cProfile.Profile] = []
_profiling = threading.Event()


def profile_threads_when_started() -> None:
    """Every thread started from now on runs under its own CPU-time profiler once `_profiling` is set (until
    then under a plain profile hook, which hands over to cProfile at the thread's next call)."""

    def hook(frame: object, event: str, arg: object) -> None:
        if _profiling.is_set():
            sys.setprofile(None)
            profiler = cProfile.Profile(time.thread_time)
            _thread_profiles.append(profiler)
            profiler.enable()

    threading.setprofile(hook)


async def serve(args: argparse.Namespace, loop_profiler: cProfile.Profile | None) -> None:
    from postoffice.store import open_store

    store = open_store(args.store)
    tls = TlsContexts(args.cert, args.key)
    group = ListenerGroup(lambda: tls.server_context)
    authenticator = Authenticator(store, AuthConfig(allow_plaintext_auth=True))
    settings = ImapSettings(hostname="localhost", spool_dir=args.store.parent)
    limits = ConnectionLimits("imap", 500, 100)

    async def handle(conn: Connection) -> None:
        await serve_imap(conn, store=store, authenticator=authenticator, settings=settings)

    for name, tls_mode in (("imap", "none"), ("imaps", "implicit")):
        await group.bind(
            ListenerSpec(name, "imap", "127.0.0.1", 0, tls_mode), handle, refuse_imap_connection, limits
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if loop_profiler is not None:
        loop.add_signal_handler(signal.SIGUSR1, start_profiling, loop_profiler)
    print(f"ports imap={group.bound['imap'][1]} imaps={group.bound['imaps'][1]}", flush=True)
    await stop.wait()
    if loop_profiler is not None:
        loop_profiler.disable()
        dump_profiles(loop_profiler, args.profile)  # before the shutdown, which is not measured
    group.stop_accepting()
    await group.wait_closed(5)
    await store.close()


def start_profiling(loop_profiler: cProfile.Profile) -> None:
    if not _profiling.is_set():
        _profiling.set()
        loop_profiler.enable()


class _Snapshot:
    """The completed calls of a profiler that is still enabled in another thread. `pstats.Stats(profiler)`
    would disable it from this thread, which closes that thread's pending calls (a worker waiting for work)
    with this thread's clock: nonsense times. Reading the entries takes the GIL, so the copy is consistent."""

    def __init__(self, profiler: cProfile.Profile) -> None:
        profiler.snapshot_stats()
        self.stats = profiler.stats

    def create_stats(self) -> None:
        pass


def dump_profiles(loop_profiler: cProfile.Profile, path: Path) -> None:
    pstats.Stats(loop_profiler).dump_stats(f"{path}.loop")
    merged = pstats.Stats(f"{path}.loop")
    threads = [_Snapshot(profiler) for profiler in list(_thread_profiles)]
    if threads:
        pstats.Stats(*threads).dump_stats(f"{path}.threads")  # type: ignore[arg-type]
        merged.add(f"{path}.threads")
    merged.dump_stats(str(path))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--profile", type=Path, help="write cProfile statistics (thread CPU time) here")
    args = parser.parse_args()
    if args.profile is None:
        asyncio.run(serve(args, None))
        return
    profile_threads_when_started()
    asyncio.run(serve(args, cProfile.Profile(time.thread_time)))


if __name__ == "__main__":
    main()
