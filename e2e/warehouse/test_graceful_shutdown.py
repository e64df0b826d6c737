"""A stopping query node (SIGTERM, as in a rolling restart) lets the statement in progress finish
and answers it, closes idle connections, and takes no new ones."""

import signal
import threading
import time

import pymysql
import pytest

from qnode import QueryNode

# Heavy enough to still run when SIGTERM arrives (a second or more in the debug build).
SLOW = "SELECT count(*) AS n FROM generate_series(1, 30000000) AS a(x) WHERE x % 7 = 3"


def test_a_statement_in_progress_is_answered_before_the_node_stops(tmp_path):
    node = QueryNode(tmp_path).start()
    try:
        busy, idle = node.connect(), node.connect()
        started = time.monotonic()
        with busy.cursor() as c:
            c.execute("SELECT 1")
        result, errors = [], []

        def run():
            try:
                with busy.cursor() as c:
                    c.execute(SLOW)
                    result.append(c.fetchone()[0])
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.3)
        assert t.is_alive(), f"the statement finished too fast to test ({time.monotonic() - started:.2f} s)"
        node.proc.send_signal(signal.SIGTERM)
        t.join(60)
        assert not errors, errors
        assert result == [len([x for x in range(3, 30000001, 7)])]
        # The idle connection was closed; the node stopped cleanly and takes no new ones.
        with pytest.raises(pymysql.err.OperationalError):
            with idle.cursor() as c:
                c.execute("SELECT 1")
        assert node.proc.wait(30) == 0
        with pytest.raises(pymysql.err.OperationalError):
            node.connect()
    finally:
        node.kill()
