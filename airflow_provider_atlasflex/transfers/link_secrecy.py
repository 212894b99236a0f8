"""Keep a snapshot link's query string (its signature) out of every log line, DEBUG included.

Why: urllib3 and the download's adapter (``header_deadline``) log each request line (path and
query) at DEBUG, and Airflow's masker only hides strings it was told about: the full URL never
appears in that line, so masking the URL alone does not help. Both defences are used: the query string, as sent and as requests re-quotes it,
is registered with Airflow's masker; and the transport loggers get a filter that replaces it in
their records before any handler sees them (this also covers processes where Airflow's masker
is not installed).
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit

from airflow_provider_atlasflex.compat import mask_secret

REDACTED = "<redacted>"
TRANSPORT_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
    "requests",
    "airflow_provider_atlasflex.transfers.header_deadline",  # the download's own adapter (its request lines)
)


class _RedactLinkQueries(logging.Filter):
    """Replaces every registered query string in a record's message and arguments."""

    def __init__(self) -> None:
        super().__init__()
        self._queries: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, query: str) -> bool:
        with self._lock:
            if query in self._queries:
                return False
            # Longest first, so a query that contains another is replaced whole.
            self._queries = tuple(sorted({*self._queries, query}, key=len, reverse=True))
            return True

    def scrub(self, text: str) -> str:
        for query in self._queries:
            if query in text:
                text = text.replace(query, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._queries:
            return True
        if isinstance(record.msg, str):
            record.msg = self.scrub(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self.scrub(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: self.scrub(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


_FILTER = _RedactLinkQueries()
_INSTALLED = threading.Event()
_INSTALL_LOCK = threading.Lock()


def hide_link_query(url: str) -> None:
    """From now on, no log line of this process shows ``url``'s query string (idempotent, thread-safe)."""
    _install()
    for query in _query_forms(url):
        if _FILTER.add(query):
            mask_secret(query)


def scrub(text: str) -> str:
    """``text`` with every hidden link query replaced (for messages built outside logging)."""
    return _FILTER.scrub(text)


def _install() -> None:
    if _INSTALLED.is_set():
        return
    with _INSTALL_LOCK:
        if not _INSTALLED.is_set():
            for name in TRANSPORT_LOGGERS:
                logging.getLogger(name).addFilter(_FILTER)
            _INSTALLED.set()


def _query_forms(url: str) -> set[str]:
    """The query as given and as requests sends it (it re-quotes unsafe characters)."""
    forms = {urlsplit(url).query}
    try:
        from requests.utils import requote_uri

        forms.add(urlsplit(requote_uri(url)).query)
    except (ImportError, ValueError):
        pass
    return {q for q in forms if q}
