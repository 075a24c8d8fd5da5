"""``python -m outpost_scenarios.kindbuild`` = ``jupyterhub-outpost kind``."""

from .cli import main

main()
