"""The connection Test (the UI's button, ``airflow connections test``, the REST test), answered in time.

A person waits for the Test. With the connection's own settings, a host that never answers
(blackholed, accepting and staying silent, or trickling a byte at a time within every read
timeout) held it for the request timeout times the retries: 22-28 s against an unreachable host,
and without bound for a trickle. So the probe runs with no retries and a per-request timeout of at
most ``REQUEST_TIMEOUT_SECONDS``, in a daemon thread, and the Test answers when the probe ends or at
``TEST_DEADLINE_SECONDS``, whichever comes first. A probe still waiting then ends by itself at its
next timeout (a trickling host: when the read stalls or the body cap is reached); nothing is
retried or written by it.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from typing import TYPE_CHECKING

from airflow_provider_atlasflex.exceptions import AtlasFlexError
from airflow_provider_atlasflex.hooks.api_protocol import RetryPolicy

if TYPE_CHECKING:
    from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook

__all__ = ["REQUEST_TIMEOUT_SECONDS", "TEST_DEADLINE_SECONDS", "answer_in_time"]

# The Test answers within this, whatever the host does (a healthy Atlas answers its 2-4 requests in ~1-2 s).
TEST_DEADLINE_SECONDS = 10.0
# Connect and read timeout of each probe request (the connection's timeout extra if smaller).
REQUEST_TIMEOUT_SECONDS = 5.0


def answer_in_time(hook: AtlasFlexHook, deadline: float = TEST_DEADLINE_SECONDS) -> tuple[bool, str]:
    """``hook.probe_connection()`` on a bounded copy of the hook; (False, why) if it has not ended by ``deadline``."""
    try:
        config = hook.config  # a connection mistake is reported at once, before any request
    except AtlasFlexError as exc:
        return False, str(exc)
    probe = type(hook)(hook.atlas_conn_id, retry_policy=RetryPolicy(max_retries=0))
    # The hook's config is a cached_property: the probe gets the connection read above, bounded.
    probe.__dict__["config"] = dataclasses.replace(
        config, timeout=min(config.timeout, REQUEST_TIMEOUT_SECONDS), max_retries=0
    )
    answers: queue.SimpleQueue[tuple[bool, str] | BaseException] = queue.SimpleQueue()

    def run() -> None:
        try:
            answers.put(probe.probe_connection())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, re-raised there
            answers.put(exc)
        finally:
            probe.close()

    threading.Thread(target=run, name=f"atlasflex-test-{hook.atlas_conn_id}", daemon=True).start()
    try:
        answer = answers.get(timeout=deadline)
    except queue.Empty:
        return False, (
            f"No complete answer from {config.base_url} within {deadline:g} s, so the Test stopped waiting: the "
            "host accepts connections but answers too slowly or not at all (or a proxy or firewall holds the "
            "requests). Check the Base URL, and the proxies extra if Atlas is reached through a proxy."
        )
    if isinstance(answer, BaseException):
        raise answer
    return answer
