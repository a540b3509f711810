"""The SQLite mail store assembled from its parts, and opened: schema created or migrated, the disk reserve
made (docs/decisions/0030), the writer thread started, the reader pool and the directory marker ready.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
from pathlib import Path

from postoffice.store.api import PathLike, StoreError
from postoffice.store.changes import ChangeBus
from postoffice.store.space import DEFAULT_MIN_FREE, DEFAULT_RESERVE, DiskSpace
from postoffice.store.sqlite.account_security import AccountSecurityMixin
from postoffice.store.sqlite.acl import AclMixin
from postoffice.store.sqlite.delivery import DeliveryMixin
from postoffice.store.sqlite.directory import DirectoryMixin
from postoffice.store.sqlite.dkim_keys import DkimKeysMixin
from postoffice.store.sqlite.greylist import GreylistMixin
from postoffice.store.sqlite.login_guard import LoginGuardMixin
from postoffice.store.sqlite.mailboxes import MailboxesMixin
from postoffice.store.sqlite.markers import ChangeMarker
from postoffice.store.sqlite.messages import MessagesMixin
from postoffice.store.sqlite.metadata import MetadataMixin
from postoffice.store.sqlite.migrations import initialise
from postoffice.store.sqlite.queue import QueueMixin
from postoffice.store.sqlite.quota import QuotaMixin
from postoffice.store.sqlite.reports import ReportsMixin
from postoffice.store.sqlite.sieve import SieveMixin
from postoffice.store.sqlite.threads import ThreadsMixin
from postoffice.store.sqlite.web_sessions import WebSessionsMixin
from postoffice.store.sqlite.writer import Writer

log = logging.getLogger("postoffice.store")


class SqliteMailStore(
    DirectoryMixin,
    LoginGuardMixin,
    MailboxesMixin,
    MessagesMixin,
    ThreadsMixin,
    QueueMixin,
    DeliveryMixin,
    WebSessionsMixin,
    AccountSecurityMixin,
    QuotaMixin,
    DkimKeysMixin,
    ReportsMixin,
    MetadataMixin,
    AclMixin,
    SieveMixin,
    GreylistMixin,
):
    """The SQLite mail store: its parts assembled (see `postoffice.store.sqlite`)."""

    def __init__(
        self,
        path: PathLike,
        *,
        reader_threads: int = 4,
        min_free_space: int = DEFAULT_MIN_FREE,
        disk_reserve: int = DEFAULT_RESERVE,
    ) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        initialise(self._path)
        self._space = DiskSpace(self._path, min_free=min_free_space, reserve=disk_reserve)
        if not self._space.make_reserve():  # opening never depends on free space (decision 0030)
            log.warning(
                "no room for the %d-byte disk reserve %s: new mail is refused until there is",
                disk_reserve,
                self._space.reserve_path,
            )
        self._change_bus = ChangeBus()
        self._writer = Writer(self._path, self._change_bus.publish_threadsafe, self._space)
        self._writer.start()
        self._writer._ready.wait()
        if self._writer._startup_error is not None:
            raise StoreError(f"cannot open the store: {self._writer._startup_error}")
        self._local = threading.local()
        self._reader_connections = []
        self._reader_lock = threading.Lock()
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=reader_threads, thread_name_prefix="postoffice-store-reader"
        )
        self._closed = False
        self._directory_marker = ChangeMarker(
            self._path.with_name(self._path.name + ".directory"), utime_on_full_disk=True
        )
        self._lockouts_marker = ChangeMarker(self._path.with_name(self._path.name + ".lockouts"))
        self._directory_key = None
        self._directory = None
        self._snapshots = collections.OrderedDict()
        self._recent_claimed = {}
        self._unseen_cache = {}
        if not self._directory_marker.path.exists():
            try:
                self._touch_directory_marker()
            except OSError as exc:
                log.warning("cannot create the directory marker %s: %s", self._directory_marker.path, exc)

    def invalidate_caches(self) -> None:
        self._directory = None
        self._unseen_cache.clear()
        self._directory_key = None
        self._snapshots.clear()
        self._recent_claimed.clear()
