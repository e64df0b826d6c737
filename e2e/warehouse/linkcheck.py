"""Helpers for the topic-link tests: the broker admin API, a raw Fetch that returns record
batches exactly as a broker sent them, an idempotent producer that reports offsets."""

import json
import socket
import struct
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Producer

from support import read_exact  # e2e/compat/support.py


def admin(broker, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(broker.http + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def _string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def raw_fetch(bootstrap, topic, partition, offset, max_bytes=1 << 20):
    """One Fetch v4 request (read_uncommitted) on a plain socket: (error, high watermark,
    record-set bytes exactly as the broker sent them)."""
    host, port = bootstrap.rsplit(":", 1)
    body = struct.pack(">iiiib", -1, 500, 1, max_bytes, 0)  # replica, max wait, min bytes, max bytes, isolation
    body += struct.pack(">i", 1) + _string(topic) + struct.pack(">i", 1)
    body += struct.pack(">iqi", partition, offset, max_bytes)
    header = struct.pack(">hhi", 1, 4, 7) + _string("link-test")  # Fetch, v4, correlation id, client id
    frame = header + body
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", read_exact(s, 4))[0]
        buf = read_exact(s, size)
    pos = 4 + 4  # correlation id, throttle time
    (topics,) = struct.unpack_from(">i", buf, pos); pos += 4
    assert topics == 1
    (name_len,) = struct.unpack_from(">h", buf, pos); pos += 2 + name_len
    (partitions,) = struct.unpack_from(">i", buf, pos); pos += 4
    assert partitions == 1
    _p, error, hwm, _lso = struct.unpack_from(">ihqq", buf, pos); pos += 4 + 2 + 8 + 8
    (aborted,) = struct.unpack_from(">i", buf, pos); pos += 4
    pos += max(aborted, 0) * 16
    (records_len,) = struct.unpack_from(">i", buf, pos); pos += 4
    records = buf[pos:pos + max(records_len, 0)]
    return error, hwm, records



def batches(bootstrap, topic, partition, start=0):
    """Every whole record batch of a partition from offset `start`, as bytes, with its base
    offset."""
    out, offset = [], start
    while True:
        error, hwm, records = raw_fetch(bootstrap, topic, partition, offset)
        assert error == 0, f"fetch {topic}-{partition}@{offset}: error {error}"
        pos, got = 0, False
        while pos + 12 <= len(records):
            base, length = struct.unpack_from(">qi", records, pos)
            if pos + 12 + length > len(records):
                break  # a partial batch at the end of the response
            batch = records[pos:pos + 12 + length]
            last_delta = struct.unpack_from(">i", batch, 23)[0]
            if base + last_delta >= offset:
                out.append((base, batch))
                offset = base + last_delta + 1
                got = True
            pos += 12 + length
        if offset >= hwm or not got:
            return out, hwm


def produce(bootstrap, topic, count, partitions, prefix="r"):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
                  "batch.num.messages": 17})
    errors, offsets = [], []

    def done(err, msg):
        if err:
            errors.append(err)
        else:
            offsets.append((msg.partition(), msg.offset()))

    for i in range(count):
        p.produce(topic, f"{prefix}-value-{i}".encode() * (1 + i % 5), key=f"k{i % 23}".encode(),
                  partition=i % partitions, headers=[("h", str(i).encode())], on_delivery=done)
        if i % 50 == 0:
            p.poll(0)
    assert p.flush(30) == 0
    return errors, offsets


def wait_for(what, check, timeout=60):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = check()
            if last:
                return last
        except (AssertionError, OSError, KeyError, IndexError, TypeError) as e:
            last = repr(e)
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what} (last: {last})")


