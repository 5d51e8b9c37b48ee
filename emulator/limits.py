"""API usage: every call counted per day (emulated clock), per route and per client name, against a daily limit."""
import collections
import threading


class ApiUsage:
    """Counts like Salesforce's DailyApiRequests; the day rolls over at midnight UTC on the emulated clock.

    Salesforce uses a rolling 24-hour window; a calendar day is simpler to reason about in tests (docs/emulator.md).
    """

    def __init__(self, daily_limit: int, clock, delivered_limit: int = 1_000_000):
        self.daily_limit = daily_limit
        self.delivered_limit = delivered_limit   # DailyDeliveredPlatformEvents (CDC events delivered to subscribers)
        self.clock = clock
        self._lock = threading.Lock()
        self._day = clock.now().date()
        self.used = 0
        self.total = 0
        self.per_route: collections.Counter = collections.Counter()
        self.per_client: collections.Counter = collections.Counter()
        self.per_route_client: collections.Counter = collections.Counter()
        # Other daily limits /limits reports (they roll over with the day too)
        self.bulk_query_jobs = 0
        self.bulk_batches = 0            # Bulk ingest: a batch per 10,000 records processed
        self.delivered_events = 0        # platform events (CDC) delivered to subscribers

    def _roll(self) -> None:
        today = self.clock.now().date()
        if today != self._day:
            self._day, self.used = today, 0
            self.bulk_query_jobs = self.bulk_batches = self.delivered_events = 0

    def count_bulk_query_job(self) -> None:
        with self._lock:
            self._roll()
            self.bulk_query_jobs += 1

    def count_ingest_records(self, records: int) -> None:
        with self._lock:
            self._roll()
            self.bulk_batches += max(1, -(-records // 10_000))

    def take_delivered(self, events: int) -> int:
        """Count up to `events` delivered events, as many as the allocation has left (checked and counted at once,
        so streams delivering together never go past it); returns how many were counted."""
        with self._lock:
            self._roll()
            taken = max(min(events, self.delivered_limit - self.delivered_events), 0)
            self.delivered_events += taken
            return taken

    def deliverable(self) -> int:
        """Events that may still be delivered today (0: the delivery allocation is exceeded)."""
        with self._lock:
            self._roll()
            return max(self.delivered_limit - self.delivered_events, 0)

    def exhausted(self) -> bool:
        with self._lock:
            self._roll()
            return self.used >= self.daily_limit

    def count(self, route: str, client: str | None) -> None:
        name = client or "(none)"
        with self._lock:
            self._roll()
            self.used += 1
            self.total += 1
            self.per_route[route] += 1
            self.per_client[name] += 1
            self.per_route_client[(route, name)] += 1

    def header(self) -> str:
        """The Sforce-Limit-Info value."""
        with self._lock:
            return f"api-usage={self.used}/{self.daily_limit}"

    def set_limit(self, daily_limit: int | None = None, used: int | None = None,
                  delivered_limit: int | None = None, delivered: int | None = None) -> None:
        with self._lock:
            if daily_limit is not None:
                self.daily_limit = daily_limit
            if used is not None:
                self.used = used
            if delivered_limit is not None:
                self.delivered_limit = delivered_limit
            if delivered is not None:
                self.delivered_events = delivered

    def snapshot(self) -> dict:
        with self._lock:
            self._roll()
            by_route: dict = {}
            for (route, client), n in self.per_route_client.items():
                by_route.setdefault(route, {})[client] = n
            return {"day": self._day.isoformat(), "used": self.used, "dailyLimit": self.daily_limit,
                    "bulkQueryJobs": self.bulk_query_jobs, "bulkBatches": self.bulk_batches,
                    "deliveredEvents": self.delivered_events, "deliveredLimit": self.delivered_limit,
                    "total": self.total, "perRoute": dict(self.per_route), "perClient": dict(self.per_client),
                    "perRouteClient": by_route}

    def reset_stats(self) -> None:
        with self._lock:
            self.total = 0
            self.per_route.clear()
            self.per_client.clear()
            self.per_route_client.clear()
