"""TLS between hub and Outpost, with a CA made in the test: the Outpost serves HTTPS with
certfile/keyfile; the hub's OutpostAPI verifies by default and trusts exactly the CA
bundle given as ``ca_certs``."""

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from jupyterhub_outpost.hub.outposts import OutpostAPI, OutpostError, parse_outpost

from tests.outpost.support import HUBS

NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(ca, names: list[str], directory, stem: str) -> tuple[str, str]:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    san = []
    for name in names:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            san.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    certfile, keyfile = directory / f"{stem}.crt", directory / f"{stem}.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    keyfile.chmod(0o600)
    return str(certfile), str(keyfile)


def write_ca(ca, path) -> str:
    path.write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    return str(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ours, other = make_ca("Outpost test CA"), make_ca("Someone else's CA")
    return {
        "dir": directory,
        "ca": write_ca(ours, directory / "ca.pem"),
        "other_ca": write_ca(other, directory / "other-ca.pem"),
        "good": make_server_cert(ours, ["127.0.0.1", "localhost"], directory, "good"),
        "foreign": make_server_cert(other, ["127.0.0.1", "localhost"], directory, "foreign"),
        "wrong_name": make_server_cert(ours, ["outpost.example.org"], directory, "wrongname"),
    }


def hub_client(url: str, ca_certs: str | None) -> OutpostAPI:
    settings = {"url": url, "hub_name": "hub1", "secret": HUBS["hub1"], "direct": True}
    if ca_certs:
        settings["ca_certs"] = ca_certs
    return OutpostAPI(parse_outpost("site", settings), timeout=10)


async def https_outpost(make_outpost, cert):
    outpost = await make_outpost(certfile=cert[0], keyfile=cert[1])
    return outpost.url.replace("http://", "https://")


async def test_hub_accepts_an_outpost_certificate_from_its_ca_bundle(make_outpost, pki):
    url = await https_outpost(make_outpost, pki["good"])
    assert await hub_client(url, pki["ca"]).flavors() == {}
    localhost = url.replace("127.0.0.1", "localhost")
    assert await hub_client(localhost, pki["ca"]).flavors() == {}


async def test_hub_verifies_by_default_and_refuses_an_unknown_ca(make_outpost, pki):
    url = await https_outpost(make_outpost, pki["good"])
    with pytest.raises(OutpostError, match="(?i)certificate|ssl|mismatch"):
        await hub_client(url, None).flavors()  # system trust store: our CA is not in it
    with pytest.raises(OutpostError, match="(?i)certificate|ssl|mismatch"):
        await hub_client(url, pki["other_ca"]).flavors()


async def test_hub_refuses_a_certificate_from_another_ca(make_outpost, pki):
    url = await https_outpost(make_outpost, pki["foreign"])
    with pytest.raises(OutpostError, match="(?i)certificate|ssl|mismatch"):
        await hub_client(url, pki["ca"]).flavors()


async def test_hub_refuses_a_certificate_for_another_name(make_outpost, pki):
    url = await https_outpost(make_outpost, pki["wrong_name"])
    with pytest.raises(OutpostError, match="(?i)certificate|ssl|mismatch"):
        await hub_client(url, pki["ca"]).flavors()


async def test_https_outpost_does_not_answer_plain_http(make_outpost, pki):
    url = await https_outpost(make_outpost, pki["good"])
    with pytest.raises(OutpostError):
        await hub_client(url.replace("https://", "http://"), pki["ca"]).flavors()


class HttpsHub:
    """A stand-in hub API over HTTPS that records what it is sent."""

    def __init__(self, cert):
        import ssl

        from tornado import web
        from tornado.httpserver import HTTPServer

        from tests.helpers.outpost_process import free_port

        self.posts = []
        posts = self.posts

        class Record(web.RequestHandler):
            def post(self, path):
                posts.append(path)
                self.finish("{}")

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*cert)
        self.port = free_port()
        self.server = HTTPServer(web.Application([(r"/(.*)", Record)]), ssl_options=context)
        self.server.listen(self.port, "127.0.0.1")
        self.url = f"https://127.0.0.1:{self.port}"

    def close(self):
        self.server.stop()


@pytest.mark.parametrize("cert, delivered", [("good", True), ("foreign", False)])
async def test_outpost_verifies_the_hubs_certificate_against_hub_ca_file(
    make_outpost, pki, cert, delivered
):
    from tests.outpost.support import start_body, wait_for

    hub = HttpsHub(pki[cert])
    try:
        outpost = await make_outpost(
            hub_ca_file=pki["ca"], hub_api={"hub1": {"url": f"{hub.url}/hub-api"}}
        )
        client = outpost.app.manager.hub_client
        sent = await client.post_json(f"{hub.url}/events", {"progress": 1}, "t", what="event")
        assert sent is delivered
        assert hub.posts == (["events"] if delivered else [])
        assert (await outpost.api.call("POST", "/services", body=start_body("tls")))[0] == 200
        events = "hub-api/outpost/events/alice/tls"
        if delivered:
            await wait_for(lambda: events in hub.posts, "events over verified HTTPS")
        else:
            assert events not in hub.posts
        assert (await outpost.api.call("DELETE", "/services/tls"))[0] == 200
    finally:
        hub.close()
