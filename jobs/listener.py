"""Wakes the drain within milliseconds of a commit: LISTEN on the capture triggers' NOTIFY channel."""
from __future__ import annotations

import logging
import threading
import time

import psycopg
from psycopg import sql

log = logging.getLogger("forcebridge.listener")
CHANNEL = "forcebridge_changes"


class Listener(threading.Thread):
    """Calls `on_change()` once at start (changes made while nobody listened) and again after every
    burst of notifications. Between bursts it blocks in Postgres: no polling, no Salesforce calls."""

    def __init__(self, url: str, on_change, next_wake=None, reconnect_seconds: float = 2.0):
        """`next_wake()` -> seconds until a change waiting for a retry is due (None: nothing waits)."""
        super().__init__(name="forcebridge-listener", daemon=True)
        self.url, self.on_change, self.reconnect_seconds = url, on_change, reconnect_seconds
        self.next_wake = next_wake
        self._wake_at: float | None = None
        self.stopping = threading.Event()
        self.listening = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._listen()
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                log.warning("listener lost its connection (%s); reconnecting", exc)
                self.stopping.wait(self.reconnect_seconds)

    def _listen(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            self.listening.set()
            self._wake()
            while not self.stopping.is_set():
                # notifications that arrived while we were draining are read here at once
                for _ in conn.notifies(timeout=1.0, stop_after=1):
                    self._wake()
                if self._wake_at is not None and time.monotonic() >= self._wake_at:
                    self._wake()   # a change waiting for its retry is due

    def _wake(self) -> None:
        self._wake_at = None
        try:
            self.on_change()
            due = self.next_wake() if self.next_wake else None
            self._wake_at = None if due is None else time.monotonic() + max(0.0, due)
        except Exception:  # noqa: BLE001 - a failed drain must not kill the listener; the backstop retries
            log.exception("drain after notification failed")

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.join(timeout)
