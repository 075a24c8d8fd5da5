"""Secrets a spawner logs are masked: the Outpost runs third-party spawners, and
BatchSpawner logs a server's whole environment (its API token) at DEBUG."""

import gc
import logging

import pytest
from jupyterhub.spawner import SimpleLocalProcessSpawner
from jupyterhub_outpost.outpost.redaction import MASK, SecretRedactor, secret_values
from outpost_scenarios.slurm_spawner import LabSlurmSpawner

from tests.outpost.support import local_spawner_config, start_body

TOKEN = "token-of-the-server-0123456789"
SECRET = "oauth-secret-abcdefghijklmnop"


class Lines(logging.Handler):
    """Every line the Outpost's logger writes, formatted with its traceback."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def log_of():
    """``log_of(outpost)`` -> Lines of its logger at DEBUG (level and handlers restored)."""
    attached = []

    def attach(outpost) -> Lines:
        logger, lines = outpost.app.log, Lines()
        attached.append((logger, lines, logger.level))
        logger.setLevel(logging.DEBUG)
        logger.addHandler(lines)
        return lines

    yield attach
    for logger, lines, level in attached:
        logger.removeHandler(lines)
        logger.setLevel(level)


def secret_body(name: str) -> dict:
    return start_body(
        name,
        env={"JUPYTERHUB_API_TOKEN": TOKEN, "JUPYTERHUB_OAUTH_CLIENT_SECRET": SECRET},
    )


async def test_batchspawner_logging_the_servers_environment_at_debug_shows_no_token(
    make_outpost, tmp_path, log_of, monkeypatch
):
    c = local_spawner_config(tmp_path)
    c.JupyterHubOutpost.spawner_class = LabSlurmSpawner
    c.LabSlurmSpawner.homes_dir = str(tmp_path / "homes")
    # no cluster: sbatch finds no slurm.conf and the submission fails (after the log)
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-slurm.conf"))
    outpost = await make_outpost(c)
    log = log_of(outpost)
    code, answer = await outpost.api.call("POST", "/services", body=secret_body("batch"))
    assert code == 500, answer
    environment = [line for line in log.lines if "Spawner submitting environment" in line]
    assert environment, "BatchSpawner did not log its environment: the test proves nothing"
    assert MASK in environment[0]
    assert TOKEN not in log.text and SECRET not in log.text


class LeakySpawner(SimpleLocalProcessSpawner):
    """Logs its environment, then fails with its token in the exception."""

    async def start(self):
        self.log.info("my environment: %r", self.get_env())
        try:
            raise KeyError(self.api_token)
        except KeyError:
            self.log.exception("looking up %s failed", self.api_token)
        raise RuntimeError(f"cannot start with token {self.api_token}")


async def test_a_spawner_cannot_leak_its_token_in_log_messages_tracebacks_or_its_failure(
    make_outpost, tmp_path, log_of
):
    c = local_spawner_config(tmp_path)
    c.JupyterHubOutpost.spawner_class = LeakySpawner
    outpost = await make_outpost(c)
    log = log_of(outpost)
    code, answer = await outpost.api.call("POST", "/services", body=secret_body("leaky"))
    assert code == 500
    # nor in the answer: the hub shows it to the user and logs it
    assert answer["error"] == f"Start of server 'leaky' failed: cannot start with token {MASK}"
    assert any("my environment" in line and MASK in line for line in log.lines)
    assert any("Start of leaky" in line and MASK in line for line in log.lines)
    assert "Traceback" in log.text and "KeyError" in log.text
    assert TOKEN not in log.text and SECRET not in log.text


async def test_secrets_of_a_stopped_server_are_forgotten(outpost):
    redactor = outpost.app.redactor
    assert (await outpost.api.call("POST", "/services", body=secret_body("gone")))[0] == 200
    assert TOKEN not in redactor.redact(TOKEN)
    assert (await outpost.api.call("DELETE", "/services/gone"))[0] == 200
    gc.collect()
    assert redactor.redact(TOKEN) == TOKEN, "the stopped server's spawner is still held"


def test_only_values_named_as_secrets_and_long_enough_are_masked():
    env = {
        "JUPYTERHUB_API_TOKEN": "t" * 8,
        "JPY_API_TOKEN": "short",
        "DB_PASSWORD": "p" * 12,
        "SSH_KEY": "k" * 10,
        "JUPYTERHUB_API_URL": "http://hub:8081/hub/api",
        "KEYBOARD": "keyboard-layout",
    }
    assert secret_values(env) == {"t" * 8, "p" * 12, "k" * 10}


def test_a_secret_containing_another_is_masked_whole():
    class Owner:
        pass

    redactor, owner = SecretRedactor(), Owner()
    redactor.track(owner, {"abcdefgh", "abcdefgh-longer"})
    assert redactor.redact("x abcdefgh-longer y abcdefgh") == f"x {MASK} y {MASK}"
    del owner
    gc.collect()
    assert redactor.redact("abcdefgh") == "abcdefgh"
