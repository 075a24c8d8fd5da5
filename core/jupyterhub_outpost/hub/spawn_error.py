"""The error of a failed start whose message the user sees."""

from jupyterhub.spawner import SpawnException


class OutpostSpawnError(SpawnException):
    """A failed start whose message is meant for the user.

    JupyterHub 6's progress stream shows ``exc.jupyterhub_message`` and falls back to
    ``str(exc)``, which for a plain SpawnException is "400 SpawnException(reason=...): <log
    message>"; this shows the message itself (and its HTML form) and logs the log message."""

    @property
    def jupyterhub_message(self) -> str:
        return self.message

    @property
    def jupyterhub_html_message(self) -> str | None:
        return self.message_html or None
