"""The emulator's one clock: real time run through a time scale, so hours of Salesforce time fit in test seconds."""
import datetime as dt
import threading
import time


class Clock:
    """now() = start + (real elapsed * scale) + manual offset; sleep() takes emulated seconds.

    Emulated time never runs backwards, even across restarts: the store hands in the latest
    timestamp it has written as `not_before`.
    """

    def __init__(self, scale: float = 1.0, not_before: dt.datetime | None = None):
        if scale <= 0:
            raise ValueError("time scale must be positive")
        self.scale = float(scale)
        self._lock = threading.Lock()
        self._real_start = time.monotonic()
        start = dt.datetime.now(dt.timezone.utc)
        if not_before is not None and not_before > start:
            start = not_before
        self._start = start
        self._offset = dt.timedelta()

    def now(self) -> dt.datetime:
        elapsed = (time.monotonic() - self._real_start) * self.scale
        with self._lock:
            offset = self._offset
        return self._start + dt.timedelta(seconds=elapsed) + offset

    def sleep(self, seconds: float) -> None:
        """Sleep for `seconds` of emulated time."""
        if seconds > 0:
            time.sleep(seconds / self.scale)

    def real_seconds(self, seconds: float) -> float:
        """How many real seconds `seconds` of emulated time take."""
        return seconds / self.scale

    def advance(self, seconds: float) -> dt.datetime:
        """Jump forward (admin API); never backwards."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += dt.timedelta(seconds=seconds)
        return self.now()
