"""SSH endpoint wiring (authorize_forward), HTTPS serving, /metrics, crypto and DB settings."""

import asyncio
import datetime
import os
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from jupyterhub_outpost.outpost.crypto import Crypt, CryptError
from jupyterhub_outpost.outpost.database import DatabaseConfigError, resolve_db_url
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from .support import HUBS, basic_auth, start_body


async def test_authorize_forward_allows_only_own_running_servers_and_admin_targets(make_outpost):
    outpost = await make_outpost(allowed_forward_targets=["10.20.0.0/16:8000-9000"])
    code, data = await outpost.api.call("POST", "/services", body=start_body("fw"))
    assert code == 200
    host, port = data["service"].rsplit(":", 1)
    authorize = outpost.app.manager.authorize_forward
    assert await authorize("hub1", host, int(port)) is True
    assert await authorize("hub2", host, int(port)) is False  # another hub's server
    assert await authorize("hub1", host, int(port) + 1) is False
    assert await authorize("hub2", "10.20.3.4", 8888) is True  # delayed tunneling target
    assert await authorize("hub2", "10.20.3.4", 9001) is False
    assert (await outpost.api.call("DELETE", "/services/fw"))[0] == 200
    assert await authorize("hub1", host, int(port)) is False  # stopped: no more forwards


async def test_ssh_endpoint_starts_with_the_outpost_and_keeps_its_host_key(make_outpost, tmp_path):
    pytest.importorskip("asyncssh")
    keys = {"hub1": []}
    outpost = await make_outpost(
        ssh_enabled=True, ssh_port=0, ssh_ip="127.0.0.1", ssh_authorized_keys=keys
    )
    endpoint = outpost.app.ssh_endpoint
    assert endpoint is not None and endpoint.bound_port > 0
    key_file = outpost.app.ssh_host_key_file
    assert key_file.startswith(outpost.app.data_dir)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert endpoint.public_host_key.startswith("ssh-ed25519 ")


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(certfile), str(keyfile)


async def test_https_serving_with_certfile_and_keyfile(make_outpost, tmp_path):
    certfile, keyfile = _self_signed(tmp_path)
    outpost = await make_outpost(certfile=certfile, keyfile=keyfile)
    url = outpost.url.replace("http://", "https://").replace("127.0.0.1", "localhost")
    client = AsyncHTTPClient()
    response = await client.fetch(
        HTTPRequest(url + "/services", headers=basic_auth("hub1", HUBS["hub1"]), ca_certs=certfile)
    )
    assert response.code == 200
    with pytest.raises(ssl.SSLError):  # verification is on: an unknown CA is refused
        await client.fetch(url + "/ping")


async def test_metrics_need_the_token_and_carry_no_secrets(make_outpost):
    outpost = await make_outpost(metrics_token="metrics-secret")
    await outpost.api.call("POST", "/services", body=start_body("m1"))
    code, data = await outpost.api.call("GET", "/metrics", hub=None)
    assert code == 401 and "metrics token" in data["error"]
    refused = await outpost.api.fetch("GET", "/metrics", hub=None)
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="jupyterhub-outpost-metrics"'
    code, text = await outpost.api.call(
        "GET", "/metrics", hub=None, headers={"Authorization": "token metrics-secret"}
    )
    assert code == 200
    assert 'outpost_active_servers{hub="hub1"} 1.0' in text
    assert "outpost_http_requests_total" in text
    assert 'outpost_starts_total{hub="hub1",outcome="started"} 1.0' in text
    for secret in (*HUBS.values(), "token-m1", "metrics-secret"):
        assert secret not in text


async def test_metrics_are_off_without_a_token(outpost):
    assert (await outpost.api.call("GET", "/metrics", hub=None))[0] == 404


def test_crypt_key_rotation_first_key_writes_all_keys_read():
    old, new = Fernet.generate_key(), Fernet.generate_key()
    written_with_old = Crypt([old]).encrypt({"token": "t"})
    rotated = Crypt([new, old])
    assert rotated.decrypt(written_with_old) == {"token": "t"}
    rewritten = rotated.encrypt({"token": "t"})
    assert Crypt([new]).decrypt(rewritten) == {"token": "t"}
    with pytest.raises(CryptError, match="cannot be decrypted"):
        Crypt([old]).decrypt(rewritten)


def test_missing_crypt_keys_generate_a_private_key_file_once(tmp_path, caplog):
    import logging

    log = logging.getLogger("test")
    first = Crypt.from_environment(str(tmp_path), log, environ={})
    path = tmp_path / "crypt_key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "OUTPOST_CRYPT_KEYS is not set" in caplog.text
    second = Crypt.from_environment(str(tmp_path), log, environ={})
    assert second.decrypt(first.encrypt([1])) == [1]


def test_malformed_crypt_key_is_refused_with_its_position():
    with pytest.raises(CryptError, match="Key number 2"):
        Crypt.from_environment(
            "/nonexistent",
            None,
            environ={"OUTPOST_CRYPT_KEYS": f"{Fernet.generate_key().decode()},short"},
        )


def test_database_url_from_options_and_environment(tmp_path):
    url = resolve_db_url("", str(tmp_path), environ={})
    assert url.drivername == "sqlite+aiosqlite" and url.database == str(tmp_path / "outpost.sqlite")
    env = {
        "SQL_TYPE": "postgresql",
        "SQL_USER": "u",
        "SQL_PASSWORD": "p@ss:word",
        "SQL_HOST": "db",
        "SQL_DATABASE": "d",
    }
    url = resolve_db_url("", str(tmp_path), environ=env)
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+asyncpg",
        "u",
        "p@ss:word",
        "db",
        5432,
        "d",
    )
    assert (
        resolve_db_url("postgresql://a:b@h/x", "", environ=env).drivername == "postgresql+asyncpg"
    )
    with pytest.raises(DatabaseConfigError, match="SQL_PASSWORD"):
        resolve_db_url(
            "",
            "",
            environ={
                "SQL_TYPE": "postgresql",
                "SQL_USER": "u",
                "SQL_HOST": "h",
                "SQL_DATABASE": "d",
            },
        )
    with pytest.raises(DatabaseConfigError, match="mysql"):
        resolve_db_url("", "", environ={"SQL_TYPE": "mysql"})


async def test_restart_with_a_new_first_key_reencrypts_so_the_old_key_can_go(
    make_outpost, tmp_path, monkeypatch
):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("OUTPOST_CRYPT_KEYS", old)
    data_dir = tmp_path / "rotating"
    first = await make_outpost(data_dir=data_dir)
    assert (await first.api.call("POST", "/services", body=start_body("rot")))[0] == 200
    # the server is this process's child: reap it when it exits, as init does for a
    # restarted Outpost process (else the second Outpost would wait for a zombie)
    proc = next(iter(first.app.manager._spawners.values())).spawner.proc
    reaped = asyncio.ensure_future(asyncio.to_thread(proc.wait))
    await first.app.stop_outpost()  # servers keep running
    monkeypatch.setenv("OUTPOST_CRYPT_KEYS", f"{new},{old}")
    second = await make_outpost(data_dir=data_dir)
    assert await second.api.call("GET", "/services/rot") == (200, {"status": None})
    row = (await second.app.store.list_hub("hub1"))[0]
    only_new = Crypt([new.encode()])
    assert only_new.decrypt(row.secrets_enc)["env"]["JUPYTERHUB_API_TOKEN"] == "token-rot"
    assert await second.app.store.reencrypt_all() == 0  # rows under the first key stay
    assert (await second.api.call("DELETE", "/services/rot"))[0] == 200
    await reaped


async def test_requests_to_a_hub_verify_tls_and_accept_the_configured_ca(make_outpost, tmp_path):
    from .support import Receiver

    certfile, keyfile = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    hub = Receiver(ssl_context=context)
    try:
        # verification is on by default: an unknown CA gets no events, the start still works
        strict = await make_outpost(hub_api=hub.hub_api())
        code, _ = await strict.api.call("POST", "/services", body=start_body("v1"))
        assert code == 200 and hub.posts == []
        trusting = await make_outpost(hub_ca_file=certfile, hub_api=hub.hub_api())
        code, _ = await trusting.api.call("POST", "/services", body=start_body("v2"))
        assert code == 200 and hub.posts_to("/hub/api/outpost/events/alice/v2")
    finally:
        hub.close()
