"""Fixtures for the query-node suite."""

import pytest

from qnode import QueryNode


@pytest.fixture
def node(tmp_path):
    n = QueryNode(tmp_path).start()
    yield n
    n.kill()
