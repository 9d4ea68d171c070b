"""Fixtures for the client tests: a real anvil and a real IPFS node on free loopback ports."""

from tests.mine.fixtures_chain import *  # noqa: F401,F403
from tests.mine.fixtures_store import *  # noqa: F401,F403
