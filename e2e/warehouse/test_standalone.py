"""`automq standalone`: broker + query node in one process, used with standard clients (kcat and
the mysql CLI), stopped with Ctrl-C (SIGINT) and started again on the same directory."""

import shutil
import subprocess
import time

import pytest

from standalone import Standalone


def wait_for(what, fn, timeout=30):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.mark.skipif(shutil.which("kcat") is None or shutil.which("mysql") is None,
                    reason="SKIPPED LOUDLY: kcat and the mysql CLI are needed (e2e/run.sh installs them)")
def test_standalone_with_kcat_and_mysql_cli(tmp_path):
    s = Standalone(tmp_path / "data")
    try:
        banner = s.start()
        assert f"Kafka bootstrap: 127.0.0.1:{s.kafka}" in banner, banner
        assert f"mysql -h 127.0.0.1 -P {s.mysql} -u root" in banner, banner
        assert f"http://127.0.0.1:{s.http}/metrics" in banner, banner
        bootstrap = f"127.0.0.1:{s.kafka}"
        lines = "".join(f'{{"id": {i}, "city": "c{i % 3}"}}\n' for i in range(50))
        r = subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", "visits"], input=lines, text=True,
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        s.mysql_cli("CREATE DATABASE web; CREATE TABLE web.visits (id INT, city VARCHAR(8)) DUPLICATE KEY (id);"
                    "USE web; CREATE ROUTINE LOAD web.v ON visits PROPERTIES (\"format\" = \"json\") "
                    f"FROM KAFKA (\"kafka_broker_list\" = \"{bootstrap}\", \"kafka_topic\" = \"visits\", "
                    "\"property.kafka_default_offsets\" = \"OFFSET_BEGINNING\")")
        wait_for("50 rows", lambda: s.mysql_cli("SELECT count(*) FROM web.visits").strip() == "50")
        assert s.mysql_cli("SELECT city, count(*) FROM web.visits GROUP BY city ORDER BY city") == \
            "c0\t17\nc1\t17\nc2\t16\n"
        code, out = s.stop()
        assert code == 0 and "automq standalone stopped" in out, (code, out)

        # Started again on the same directory: the topic and the table are still there.
        s.start()
        assert s.mysql_cli("SELECT count(*) FROM web.visits").strip() == "50"
        r = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", "visits", "-e", "-q"], capture_output=True,
                           text=True, timeout=60)
        assert r.stdout.count('"id"') == 50, r.stdout[-500:]
        r = subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", "visits"], input='{"id": 99, "city": "new"}\n',
                           text=True, capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        wait_for("the routine load to carry on", lambda: s.mysql_cli("SELECT count(*) FROM web.visits").strip() == "51")
        code, _ = s.stop()
        assert code == 0
    finally:
        s.kill()
