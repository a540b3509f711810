"""The server process: one event loop, every enabled listener, the store, signals and privilege drop.

Implementation notes
- Start-up order: check the config (the caller did), load TLS, open the store, bind every listener, then drop
  privileges (when started as root with `server.user` set), then announce readiness. A listener that cannot
  bind stops the start: a half-working server never runs.
- SIGTERM / SIGINT: stop accepting, let sessions in a transaction finish for up to `server.shutdown_grace`
  seconds (idle sessions are told 421 at once), then close the store cleanly (final WAL checkpoint).
- SIGHUP: reload the TLS certificate and key (new connections get the new one) and drop the directory
  snapshot. The snapshot also reloads by itself after any directory change (the store's marker file), so
  `postoffice user add` takes effect at once without a signal.
- Readiness: one line "postoffice ready: <name>=<address>:<port> ..." on stdout, flushed, once every listener
  is bound (tests and service managers wait for it).
- File descriptors: every connection is one (two while a session spools to a file), and an IMAP client keeps
  its IDLE connection open for hours, so before anything binds the soft RLIMIT_NOFILE is raised to the hard
  limit (the usual soft limit, 1024, would cap the server below a thousand connections). Failing to raise it
  is logged, not fatal: the server then holds fewer connections, and accept errors say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import resource
import signal
import ssl
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from postoffice.auth.authenticator import Authenticator
from postoffice.config import Config
from postoffice.delivery.pipeline import DeliveryPipeline, shared_pipeline
from postoffice.directory.dns_records import server_resolver
from postoffice.mailauth.report_sender import ReportSender
from postoffice.net.listener import ConnectionLimits, ListenerGroup, ListenerSpec
from postoffice.net.service import ServiceContext
from postoffice.net.tls import TlsContexts, TlsError
from postoffice.protocols import SERVICES
from postoffice.smtp.queue import QueueRunner, queue_runner
from postoffice.spam.settings import controller_of

if TYPE_CHECKING:
    from postoffice.spam.learning import SpamLearner
from postoffice.store import MailStore, StoreError, open_store

log = logging.getLogger("postoffice.server")

#: The soft descriptor limit aimed for when the hard limit is "unlimited" (Linux refuses more than
#: fs.nr_open, whose default is this).
NOFILE_WHEN_UNLIMITED = 1 << 20


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit in force afterwards.

    Never raises: when the limit cannot be raised it stays as it was, with a warning in the log."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError) as exc:
        log.warning("cannot read the file descriptor limit: %s", exc)
        return -1
    unlimited = resource.RLIM_INFINITY
    target = NOFILE_WHEN_UNLIMITED if hard == unlimited else hard
    if soft == unlimited or soft >= target:
        log.info("file descriptor limit: %s", "unlimited" if soft == unlimited else soft)
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:
        log.warning(
            "file descriptor limit stays at %d (hard limit %s): %s; each connection needs one",
            soft,
            "unlimited" if hard == unlimited else hard,
            exc,
        )
        return soft
    log.info("file descriptor limit raised from %d to %d", soft, target)
    return target


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    if not path.exists():
        return
    os.chown(path, uid, gid)
    if path.is_dir():
        for child in path.rglob("*"):
            with contextlib.suppress(OSError):
                os.chown(child, uid, gid, follow_symlinks=False)


def _preload_codecs() -> None:
    """Import every text codec now: after the switch the Python installation may not be readable by the
    unprivileged user, and MIME decoding and IDNA look codecs up lazily."""
    import encodings
    import encodings.aliases
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(encodings.__path__):
        with contextlib.suppress(Exception):
            importlib.import_module(f"encodings.{module.name}")


def drop_privileges(user: str, group: str, writable: list[Path]) -> None:
    """Switch to `user` (and `group`, default the user's primary group) after the ports are bound."""
    entry = pwd.getpwnam(user)
    _preload_codecs()
    gid = grp.getgrnam(group).gr_gid if group else entry.pw_gid
    for path in writable:
        _chown_tree(path, entry.pw_uid, gid)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(entry.pw_uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise RuntimeError("failed to drop root privileges")
    log.info("dropped privileges to user %s (uid %d, gid %d)", user, entry.pw_uid, gid)


#: How often old expunge records are pruned (`[store] tombstone_days`, docs/decisions/0069).
PRUNE_INTERVAL = 6 * 3600.0


async def prune_tombstones_forever(store: MailStore, days: int, interval: float = PRUNE_INTERVAL) -> None:
    """Remove expunge records older than `days`, now and every `interval` seconds; failures are logged."""
    while True:
        try:
            pruned = await store.prune_tombstones(time.time() - days * 86400.0)
            if pruned:
                log.info("pruned %d expunge records older than %d days", pruned, days)
        except Exception:
            log.exception("pruning expunge records failed; trying again later")
        await asyncio.sleep(interval)


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.tls: TlsContexts | None = None
        self.store: MailStore | None = None
        self.listeners: ListenerGroup | None = None
        self._stop = asyncio.Event()
        self.queue_runner: QueueRunner | None = None
        self.pipeline: DeliveryPipeline | None = None
        self.report_sender: ReportSender | None = None
        self._pruner: asyncio.Task[None] | None = None
        self.authenticator: Authenticator | None = None
        self.learner: SpamLearner | None = None

    async def start(self) -> None:
        cfg = self.config
        needs_tls = any(lst.tls != "none" for lst in cfg.enabled_listeners() if lst.built)
        if needs_tls:
            self.tls = TlsContexts.from_config(cfg.tls)
        tls = self.tls
        cfg.store.spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = open_store(cfg.store)
        listeners = self.listeners = ListenerGroup(
            (lambda: tls.server_context) if tls is not None else (lambda: None),
            min_data_rate=cfg.limits.min_data_rate,
        )
        authenticator = self.authenticator = Authenticator(self.store, cfg.auth)
        await authenticator.start()  # lockouts kept across restarts (docs/decisions/0027)
        context = ServiceContext(cfg, self.store, authenticator, tls)
        context.shared("net.bound", lambda: listeners.bound)  # the ports bound, for the web's autoconfig
        await self._bind_listeners(listeners, context)
        if cfg.server.user and os.geteuid() == 0:
            # The TLS key goes to the service user too: the process holds it in memory anyway, and SIGHUP
            # reloads must be able to read a renewed certificate after the switch (docs/decisions/0007).
            drop_privileges(
                cfg.server.user,
                cfg.server.group,
                [cfg.store.path.parent, cfg.store.spool_dir, cfg.tls.certificate.parent, cfg.tls.private_key],
            )
        self.pipeline = shared_pipeline(context)
        self.queue_runner = queue_runner(cfg, self.store, self.pipeline)
        self.queue_runner.start()
        if cfg.mailauth.send_reports:
            self.report_sender = ReportSender(
                self.store,
                self.pipeline,
                server_resolver(cfg),
                hostname=cfg.server.hostname,
                report_from=cfg.mailauth.report_from,
                context=ssl.create_default_context(cafile=cfg.queue.tls_ca_file or None),
            )
            self.report_sender.start()
        if cfg.spam.rspamd_url and cfg.spam.learn:
            from postoffice.spam.learning import RspamdController, SpamLearner

            controller = RspamdController(
                controller_of(cfg.spam), timeout=cfg.spam.timeout, password=cfg.spam.controller_password
            )
            self.learner = SpamLearner(self.store, controller)
            self.learner.start()
        if cfg.store.tombstone_days:
            self._pruner = asyncio.get_running_loop().create_task(
                prune_tombstones_forever(self.store, cfg.store.tombstone_days), name="tombstone-pruner"
            )
        bound = " ".join(f"{name}={addr}:{port}" for name, (addr, port) in self.listeners.bound.items())
        print(f"postoffice ready: {bound}", flush=True)

    async def _bind_listeners(self, listeners: ListenerGroup, context: ServiceContext) -> None:
        """Bind every enabled listener of a built protocol, each with its service's handler, refusal,
        connection-cap pool and login deadline (docs/decisions/0032)."""
        cfg = self.config
        pools: dict[str, ConnectionLimits] = {}
        for listener in cfg.enabled_listeners():
            service = SERVICES[listener.protocol]
            spec = ListenerSpec(
                listener.name, listener.protocol, listener.address, listener.port, listener.tls
            )
            if service.app is not None:
                settings = cfg.section(service.settings) if service.settings else None
                await listeners.bind_app(spec, service.app(settings, context, spec))
                continue
            if service.factory is None:
                log.warning(
                    "listener %s: protocol %s is not built yet in this version; not started",
                    listener.name,
                    listener.protocol,
                )
                continue
            refuse, caps_section = service.refuse, service.caps
            if refuse is None or caps_section is None:  # a built service names both (postoffice.net.service)
                raise RuntimeError(f"service {service.name} has a factory but no refusal or connection caps")
            limits = pools.get(service.pool)
            if limits is None:
                caps = cfg.section(caps_section)
                limits = pools[service.pool] = ConnectionLimits(
                    service.pool, caps.max_connections, caps.max_connections_per_ip
                )
            await listeners.bind(
                spec,
                service.factory(cfg.section(service.settings) if service.settings else None, context),
                refuse,
                limits,
                login_timeout=cfg.limits.login_timeout if service.login else None,
            )

    def request_stop(self) -> None:
        self._stop.set()

    def reload(self) -> None:
        if self.tls is not None:
            self.tls.reload()
        if self.store is not None:
            self.store.invalidate_caches()
        log.info("reload done: certificate, and the account directory is read again from the store")

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        await self._stop.wait()
        log.info(
            "shutting down: no new connections; sessions in flight get %.0f s",
            self.config.server.shutdown_grace,
        )

    async def shutdown(self) -> None:
        if self.report_sender is not None:
            await self.report_sender.stop()
        if self.learner is not None:
            await self.learner.stop()
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        if self.queue_runner is not None:
            await self.queue_runner.stop()  # deliveries in flight are cut; their recipients stay pending
        if self.listeners is not None:
            self.listeners.stop_accepting()
            await self.listeners.wait_closed(self.config.server.shutdown_grace)
        if self.pipeline is not None:
            await self.pipeline.close()  # the stages' report counts reach the store
        if self.authenticator is not None:
            await self.authenticator.close()  # lockouts still being written reach the store
        if self.store is not None:
            stats = " ".join(f"{k}={v}" for k, v in self.store.stats().items())
            log.info("store stats: %s", stats)
            await self.store.close()
        log.info("stopped")


async def _main(config: Config) -> int:
    server = Server(config)
    try:
        await server.start()
    except (OSError, StoreError, TlsError, KeyError, RuntimeError) as exc:
        log.error("cannot start: %s", exc)
        await server.shutdown()
        return 1
    try:
        await server.serve()
    finally:
        await server.shutdown()
    return 0


def run_server(config: Config) -> int:
    setup_logging(config.server.log_level)
    raise_fd_limit()
    return asyncio.run(_main(config))
