"""Mutual TLS end to end: a loopback HTTPS gateway that demands a client certificate issued by a
test CA, reached by both the token fetch (requests) and the API transport (aiohttp).

Certificates are made with the `openssl` command line for each run; the test is skipped where
that tool is missing.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from dersync.aemo import AemoClient
from dersync.settings import Settings

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(name: str, subject: str, extensions: str, cwd: Path) -> None:
    """A key and a certificate for `subject`, signed by the test CA in `cwd`."""
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={subject}", cwd=cwd)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=cwd)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    root = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=dersync-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=root)
    _issue("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n", root)
    _issue("client", "dersync-client", "extendedKeyUsage=clientAuth\n", root)
    return root


@pytest.fixture
async def mtls_gateway(pki: Path) -> AsyncIterator[tuple[str, list[str]]]:
    """HTTPS on loopback requiring a client certificate; records each caller's certificate CN."""
    seen: list[str] = []

    def client_cn(request: web.Request) -> str:
        cert: Any = request.transport.get_extra_info("peercert") if request.transport else None
        return dict(x[0] for x in cert["subject"])["commonName"]

    async def token(request: web.Request) -> web.Response:
        seen.append(client_cn(request))
        return web.json_response({"transactionID": "t", "acess_token": "tok", "access_token_expires_in": "3599"})

    async def nmi_get(request: web.Request) -> web.Response:
        seen.append(client_cn(request))
        return web.json_response({"transactionId": "x", "data": {"nmi": request.match_info["nmi"]}})

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    context.load_cert_chain(str(pki / "server.pem"), str(pki / "server.key"))
    context.verify_mode = ssl.CERT_REQUIRED
    app = web.Application()
    app.router.add_post("/oauth/v1/token", token)
    app.router.add_get("/wem/v1/der-register/nmi-details/{nmi}", nmi_get)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


async def test_client_certificate_and_ca_bundle_are_used_by_token_fetch_and_transport(
    mtls_gateway: tuple[str, list[str]], pki: Path
) -> None:
    """With tls_client_cert/key and tls_ca_bundle set, the token request and the API request both
    present the client certificate and trust the private CA (no system trust involved)."""
    base, seen = mtls_gateway
    settings = Settings(
        oauth_token_url=f"{base}/oauth/v1/token",
        nmi_api_url=f"{base}/wem/v1/der-register",
        installation_api_url=f"{base}/v2/der-register",
        client_id="dersync-demo",
        client_secret="demo-secret",
        participant_id="NETOP",
        tls_client_cert=pki / "client.pem",
        tls_client_key=pki / "client.key",
        tls_ca_bundle=pki / "ca.pem",
        max_retries=0,
    )
    async with AemoClient(settings) as client:
        response = await client.nmi.get("8001000001")
    assert response.ok and response.data == {"nmi": "8001000001"}
    assert seen == ["dersync-client", "dersync-client"]
