"""One sweep writes a store at a time: an exclusive flock on <store>/.lock, re-entrant within a
process; the kernel drops it when its process dies, so a stale lock is taken over."""
import errno
import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from datetime import datetime, timezone

LOCK = ".lock"
_HELD = {}  # lock path -> [fd, depth]: this process's locks (re-entrant)


class StoreError(ValueError):
    """A results store that cannot be used as asked; the message names the folder."""


class StoreLocked(StoreError):
    """Another live sweep holds the store's lock."""


class StoreLock:
    """The lock methods of Store (self.root: the store's folder)."""

    @property
    def lock_path(self):
        return self.root / LOCK

    def _key(self):
        return os.path.realpath(self.lock_path)

    def holds_lock(self):
        """True when this process holds the store's lock (a hold on a lock file since
        deleted or replaced no longer counts)."""
        key = self._key()
        held = _HELD.get(key)
        if held is None:
            return False
        try:
            same = os.fstat(held[0]).st_ino == os.stat(key).st_ino
        except OSError:
            same = False
        if not same:
            del _HELD[key]
            os.close(held[0])
        return same

    def holder(self):
        """The lock file's {"pid", "host", "since"} (the last sweep that took it), or {}."""
        try:
            info = json.loads(self.lock_path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def acquire(self, wait=0.0):
        """Takes the store's lock (re-entrant within a process), waiting up to `wait` seconds
        for another sweep to finish; raises StoreLocked naming the holder."""
        key = self._key()
        if self.holds_lock():
            _HELD[key][1] += 1
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreError(f"{self.root}: cannot write a results store here: "
                             f"{err.strerror or err}") from None
        deadline = time.monotonic() + max(0.0, float(wait))
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise StoreError(f"{self.root}: cannot lock {LOCK}: {err.strerror}") \
                        from None
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreLocked(self._locked_message(wait)) from None
                time.sleep(0.2)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        _HELD[key] = [fd, 1]

    def _locked_message(self, wait):
        info = self.holder()
        who = (f"pid {info.get('pid', '?')} on {info.get('host', '?')} since "
               f"{info.get('since', '?')}")
        waited = f" (waited {float(wait):g} s)" if wait else ""
        return (f"{self.root}: another sweep is writing this store ({who}){waited}; let it "
                f"finish, or wait for it with --wait SECONDS")

    def release(self):
        """Gives back one hold of the lock; the last one unlocks it."""
        key = self._key()
        held = _HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] <= 0:
            del _HELD[key]
            fcntl.flock(held[0], fcntl.LOCK_UN)
            os.close(held[0])

    @contextmanager
    def lock(self, wait=0.0):
        """`with store.lock(): ...` holds the store's lock for the block."""
        self.acquire(wait)
        try:
            yield self
        finally:
            self.release()
