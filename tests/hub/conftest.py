"""Fixtures for the hub-side unit tests: an OutpostSpawner bound to a real JupyterHub
User/Hub object model (in-memory database), a stand-in Outpost and a stand-in tunnel
daemon client (see fakes.py)."""

from __future__ import annotations

import pytest
from jupyterhub import orm
from jupyterhub.objects import Hub, Server
from jupyterhub.user import User
from jupyterhub_outpost.hub.flavors import flavor_cache
from jupyterhub_outpost.hub.spawner import OutpostSpawner
from traitlets.config import Config

from .fakes import FakeOutpost, FakeTunnelClient

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVzZXJfdGVzdF9ob3N0X2tleV9ub3RfcmVhbDAwMDA"


@pytest.fixture
async def fake_outpost():
    outpost = FakeOutpost()
    await outpost.start()
    yield outpost
    await outpost.stop()


@pytest.fixture
def fake_tunnels(monkeypatch):
    client = FakeTunnelClient()
    monkeypatch.setattr(OutpostSpawner, "get_tunnel_client", lambda self: client)
    return client


@pytest.fixture(autouse=True)
def _clear_flavor_cache():
    flavor_cache.clear()
    yield
    flavor_cache.clear()


@pytest.fixture
def db():
    session = orm.new_session_factory("sqlite:///:memory:")()
    user = orm.User(name="alice")
    session.add(user)
    session.commit()
    yield session
    session.close()


def outposts_config(fake: FakeOutpost, **extra) -> dict:
    remote = {
        "url": fake.url,
        "hub_name": fake.hub_name,
        "secret": fake.secret,
        "ssh": {"host": "127.0.0.1", "port": 8022, "user": fake.hub_name, "host_key": HOST_KEY},
        "display_name": "Remote",
    }
    local = {"url": fake.url, "hub_name": fake.hub_name, "secret": fake.secret, "direct": True}
    cfg = {"remote": remote, "local": local}
    for name, settings in extra.items():
        cfg[name] = settings
    return cfg


@pytest.fixture
def make_spawner(db, fake_outpost):
    """``make_spawner(server_name="", user_options=None, **OutpostSpawner config)``."""

    def make(server_name: str = "", user_options: dict | None = None, **config) -> OutpostSpawner:
        c = Config()
        c.OutpostSpawner.outposts = config.pop("outposts", outposts_config(fake_outpost))
        for key, value in config.items():
            setattr(c.OutpostSpawner, key, value)
        orm_user = db.query(orm.User).filter_by(name="alice").one()
        user = User(orm_user, {"config": c, "db": db})
        orm_spawner = orm_user.orm_spawners.get(server_name)
        if orm_spawner is None:
            orm_spawner = orm.Spawner(user=orm_user, name=server_name)
            db.add(orm_spawner)
            db.commit()
        hub = Hub(ip="127.0.0.1", port=8081, base_url="/hub/")
        spawner = OutpostSpawner(
            user=user,
            hub=hub,
            orm_spawner=orm_spawner,
            config=c,
            oauth_client_id="jupyterhub-user-alice",
            api_token="server-token",
        )
        if orm_spawner.server is None:
            orm_spawner.server = orm.Server(base_url=f"/user/alice/{server_name}")
            db.commit()
        spawner.server = Server(orm_server=orm_spawner.server)
        spawner.user_options = dict(user_options or {"outpost": "remote", "flavor": "small"})
        return spawner

    return make
