"""Which snapshot links are fetched, and what the transport loggers may print about them."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_atlasflex.exceptions import SnapshotTransferError
from airflow_provider_atlasflex.transfers.link_policy import check_peer, check_snapshot_link, redirect_target
from airflow_provider_atlasflex.transfers.link_secrecy import hide_link_query

QUERY = "X-Amz-Signature=abcdef0123456789&X-Amz-Expires=14400"


@pytest.mark.parametrize(
    "url",
    [f"https://bucket.s3.amazonaws.com/a/b.tgz?{QUERY}", "https://8.8.8.8/x.tgz", "https://[2001:4860::8888]/x"],
)
def test_public_https_links_pass(url):
    assert check_snapshot_link(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"http://bucket.example/x.tgz?{QUERY}", "plain http"),
        (f"https://127.0.0.1/x?{QUERY}", "loopback, private or link-local"),
        (f"https://127.1/x?{QUERY}", "loopback"),
        (f"https://0x7f.0.0.1/x?{QUERY}", "loopback"),
        (f"https://[::ffff:127.0.0.1]/x?{QUERY}", "loopback"),
        (f"https://[fe80::1%25eth0]/x?{QUERY}", "loopback"),
        (f"https://100.64.0.1/x?{QUERY}", "loopback"),
        (f"https://0.0.0.0/x?{QUERY}", "loopback"),
        (f"https://224.0.0.1/x?{QUERY}", "loopback"),
        (f"https://foo.localhost/x?{QUERY}", "loopback"),
        (f"https://user:pw@bucket.example/x?{QUERY}", "carries credentials"),
        (f"file:///etc/passwd?{QUERY}", "scheme 'file'"),
        (f"gopher://x/?{QUERY}", "scheme 'gopher'"),
        (f"https:///x?{QUERY}", "has no host"),
        (f"https://bucket.example:99999/x?{QUERY}", "not a valid URL"),
        (None, "not a URL"),
    ],
)
def test_refused_links_say_why_without_the_query(url, message):
    with pytest.raises(SnapshotTransferError, match=message) as refused:
        check_snapshot_link(url)
    assert "abcdef0123456789" not in str(refused.value) and "pw@" not in str(refused.value)


def test_the_opt_out_allows_local_http():
    url = f"http://127.0.0.1:8080/x.tgz?{QUERY}"
    assert check_snapshot_link(url, allow_insecure_http=True) == url
    with pytest.raises(SnapshotTransferError, match="scheme 'file'"):
        check_snapshot_link(f"file:///x?{QUERY}", allow_insecure_http=True)


def test_peer_addresses():
    check_peer("52.216.1.2", "https://b.example/x")
    check_peer(None, "https://b.example/x")  # unknown (mocked transport)
    check_peer("127.0.0.1", "https://b.example/x", allow_insecure_http=True)
    for address in ("127.0.0.1", "10.0.0.7", "169.254.169.254", "::1", "fe80::1%eth0"):
        with pytest.raises(SnapshotTransferError, match="resolved to the non-public address") as refused:
            check_peer(address, f"https://b.example/x?{QUERY}")
        assert "abcdef" not in str(refused.value)


def test_redirects_stay_on_the_same_origin():
    base = f"https://b.example/x.tgz?{QUERY}"
    assert redirect_target(base, "/y.tgz?z=1") == "https://b.example/y.tgz?z=1"
    assert redirect_target(base, "https://B.EXAMPLE:443/y") == "https://B.EXAMPLE:443/y"
    for location in ("https://other.example/y", "http://b.example/y", "https://b.example:8443/y", None):
        with pytest.raises(SnapshotTransferError) as refused:
            redirect_target(base, location)
        assert "abcdef" not in str(refused.value)


def test_transport_debug_lines_lose_the_query(caplog):
    url = "https://b.example/backup/x.tgz?Expires=1&Signature=very-secret-signature-123"
    hide_link_query(url)
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    logging.getLogger("urllib3.connectionpool").debug(
        '%s://%s:%s "%s %s %s" %s %s', "https", "b.example", 443, "GET",
        "/backup/x.tgz?Expires=1&Signature=very-secret-signature-123", "HTTP/1.1", 200, 10,
    )
    [record] = [r for r in caplog.records if r.name == "urllib3.connectionpool"]
    assert "very-secret-signature-123" not in record.getMessage()
    assert '"GET /backup/x.tgz?<redacted> HTTP/1.1"' in record.getMessage()
