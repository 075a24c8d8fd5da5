import shutil

import pytest
from outpost_scenarios import netns

from .lab import SSHD, AnsibleLab


def need_netns_and_sshd() -> None:
    available, reason = netns.isolation_available()
    if not available:
        pytest.skip(f"network namespaces not available here: {reason}")
    if not shutil.which(SSHD) and not __import__("os").path.exists(SSHD):
        pytest.skip(f"{SSHD} missing: install Debian's openssh-server (make deps-system)")
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen missing: install openssh-client")


@pytest.fixture(scope="module")
def ansible_lab(tmp_path_factory):
    need_netns_and_sshd()
    tmp = tmp_path_factory.mktemp("ansible-lab")
    lab = netns.Lab(isolation=True)
    alab = None
    try:
        alab = AnsibleLab(tmp, lab)
        yield alab
    finally:
        if alab is not None:
            alab.close_control_masters()
        lab.close()
