"""Reusable test fixtures that start real processes.

- ``tests.helpers.postgres``: a throwaway PostgreSQL 15 server for a test session.
- ``tests.helpers.outpost_process``: a real ``jupyterhub-outpost`` subprocess.

Import the modules directly (``from tests.helpers.outpost_process import OutpostProcess``);
the pytest fixtures they define are registered by importing them in a conftest.py.
"""
