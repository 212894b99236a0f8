"""The connection's ``verify`` / ``ca_bundle`` / ``proxies`` win over REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, HTTPS_PROXY.

requests lets those environment variables override ``session.verify`` and ``session.proxies``
(``merge_environment_settings``, psf/requests#3829): a connection that pins a private CA bundle
would silently trust whatever bundle the worker's environment names, one with ``verify: false``
would suddenly verify, and a configured proxy would be swapped for the environment's. The API hook
(every call, service-account token requests included) and the download pass the connection's
values with each request, where the environment cannot override them.

The API is the emulator behind a real TLS front on 127.0.0.1, with certificates made for the test:
the connection's CA signed the front's certificate; the "environment" CA did not.
"""

from __future__ import annotations

import datetime
import ipaddress
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_atlasflex.exceptions import AtlasApiError
from tests.reliability.registry import reliability

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")


def _ca(name: str) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_cert(ca_key: Any, ca_cert: Any) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _pem(path: Path, cert: Any, key: Any = None) -> Path:
    from cryptography.hazmat.primitives import serialization

    data = cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    path.write_bytes(data)
    return path


class TlsFront:
    """TLS on 127.0.0.1 in front of a plain-HTTP backend (the emulator); counts completed handshakes."""

    def __init__(self, backend_port: int, cert_and_key: Path) -> None:
        self.backend_port = backend_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_and_key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            client.close()  # the client refused our certificate
            return
        self.handshakes += 1
        backend = socket.create_connection(("127.0.0.1", self.backend_port))
        try:
            while True:
                readable, _, _ = select.select([tls, backend], [], [], 30)
                if not readable:
                    return
                for source in readable:
                    target = backend if source is tls else tls
                    data = source.recv(65536)
                    if not data:
                        return
                    while isinstance(source, ssl.SSLSocket) and source.pending():
                        data += source.recv(source.pending())
                    target.sendall(data)
        except OSError:
            return
        finally:
            backend.close()
            tls.close()

    def close(self) -> None:
        self._stop = True
        self.listener.close()


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """The connection's CA (it signed the server's certificate) and an unrelated 'environment' CA."""
    conn_key, conn_ca = _ca("connection CA")
    _, env_ca = _ca("environment CA")
    server_key, server_cert = _server_cert(conn_key, conn_ca)
    return {
        "connection_ca": _pem(tmp_path / "connection-ca.pem", conn_ca),
        "environment_ca": _pem(tmp_path / "environment-ca.pem", env_ca),
        "server": _pem(tmp_path / "server.pem", server_cert, server_key),
    }


@pytest.fixture
def tls_front(emu: Any, pki: dict[str, Path]) -> Iterator[TlsFront]:
    front = TlsFront(int(emu.base_url.rsplit(":", 1)[1].split("/")[0]), pki["server"])
    yield front
    front.close()


def _connect(
    monkeypatch: pytest.MonkeyPatch, atlas_conn: Any, emu: Any, front: TlsFront, auth: str, **extra: Any
) -> None:
    import json

    atlas_conn(emu, auth, **extra)
    fields = json.loads(__import__("os").environ["AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT"])
    fields["host"] = front.url
    fields["extra"].pop("allow_insecure_http", None)  # a real https API host
    monkeypatch.setenv("AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT", json.dumps(fields))


def _get_cluster() -> dict[str, Any]:
    from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook

    hook = AtlasFlexHook()
    try:
        return hook.get_flex_cluster("alpha")
    finally:
        hook.close()


@reliability(
    "hostile",
    "The connection pins its own CA (extra ca_bundle) for a real TLS API host on 127.0.0.1, and the worker's "
    "environment sets REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE) to another CA bundle; digest and service-account auth",
    "Passed the connection's CA bundle with every API request and token request (where requests lets the "
    "environment win over session.verify), so the TLS handshake was checked against the connection's CA",
    "Nothing: the calls succeed; the environment's bundle is ignored for this connection",
)
@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_connection_ca_bundle_wins_over_the_environments(emu, atlas_conn, tls_front, pki, monkeypatch, variable, auth):
    monkeypatch.setenv(variable, str(pki["environment_ca"]))
    _connect(monkeypatch, atlas_conn, emu, tls_front, auth, ca_bundle=str(pki["connection_ca"]))
    assert _get_cluster()["name"] == "alpha"
    assert tls_front.handshakes >= 1


@reliability(
    "hostile",
    "The connection pins a CA bundle that did NOT sign the API host's certificate, while REQUESTS_CA_BUNDLE in the "
    "environment names the CA that did (the environment would widen what the connection trusts)",
    "Checked the handshake against the connection's bundle only: refused the host before any request was sent",
    "'Could not reach Atlas ...: SSLError (...): the host's TLS certificate was not accepted by the connection's "
    "verify / ca_bundle extras ...'; nothing is trusted beyond the connection's CA",
)
def test_environment_bundle_cannot_widen_the_connections_trust(emu, atlas_conn, tls_front, pki, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki["connection_ca"]))  # this one would accept the host
    _connect(monkeypatch, atlas_conn, emu, tls_front, "digest", ca_bundle=str(pki["environment_ca"]), max_retries=0)
    with pytest.raises(
        AtlasApiError, match="SSLError .*TLS certificate was not accepted by the connection's verify / ca_bundle"
    ):
        _get_cluster()
    assert [r for r in emu.requests if "flexClusters" in r.path] == []


@reliability(
    "hostile",
    "The connection sets verify: false (a lab host with a self-signed certificate) and REQUESTS_CA_BUNDLE is set "
    "in the environment",
    "Sent verify=False with each request, as the connection says (requests would otherwise verify against the "
    "environment's bundle)",
    "Nothing: the calls succeed as configured (verify: false stays the connection owner's explicit choice)",
)
def test_verify_false_is_not_turned_on_by_the_environment(emu, atlas_conn, tls_front, pki, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki["environment_ca"]))
    _connect(monkeypatch, atlas_conn, emu, tls_front, "service_account", verify=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # urllib3's InsecureRequestWarning: verify=false is the point here
        assert _get_cluster()["name"] == "alpha"


def test_verify_true_uses_the_environments_bundle(emu, atlas_conn, tls_front, pki, monkeypatch):
    """verify: true (the default) means the deployment's trust store: REQUESTS_CA_BUNDLE may supply it."""
    _connect(monkeypatch, atlas_conn, emu, tls_front, "digest", max_retries=0)
    with pytest.raises(
        AtlasApiError, match="SSLError .*TLS certificate was not accepted by the connection's verify / ca_bundle"
    ):
        _get_cluster()  # the system's CAs do not know the test CA
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki["connection_ca"]))
    assert _get_cluster()["name"] == "alpha"


@reliability(
    "hostile",
    "The connection sets proxies and a ca_bundle; the worker's environment sets HTTPS_PROXY to another proxy and "
    "REQUESTS_CA_BUNDLE to another bundle",
    "Passed the connection's proxies and CA bundle with every API request and with the snapshot download",
    "Nothing: API calls and the download go through the connection's proxy with its CA bundle",
)
def test_environment_proxy_and_bundle_do_not_replace_the_connections(requests_mock, monkeypatch, tmp_path):
    from tests.reliability.test_hostile_download import LINK, TGZ, api, connect, copy
    from tests.unit.conftest import CLUSTER_URL, SNAP

    requests_mock.get(f"{CLUSTER_URL}/backup/snapshots/{SNAP}", json={"id": SNAP, "status": "COMPLETED"})

    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    other = tmp_path / "environment-ca.pem"
    other.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("HTTPS_PROXY", "http://environment-proxy.test:8080")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    proxies = {"https": "http://proxy.internal.test:3128"}
    connect(monkeypatch, proxies=proxies, verify=str(bundle))
    api(requests_mock)
    link = requests_mock.get(LINK, content=TGZ)
    copy(tmp_path)
    [download] = link.request_history
    api_calls = [r for r in requests_mock.request_history if r not in link.request_history]
    assert api_calls
    for request in [*api_calls, download]:
        assert request.verify == str(bundle), f"{request.netloc}{request.path}: verify={request.verify!r}"
        assert request.proxies.get("https") == proxies["https"], (
            f"{request.netloc}{request.path}: proxies={request.proxies!r}"
        )
