"""Shared helpers for integration tests: run real processes, poll real endpoints."""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from stream.settings import Settings

T = TypeVar("T")


def eventually(probe: Callable[[], T], timeout: float = 60.0, interval: float = 0.3) -> T:
    """Poll `probe` until it returns a truthy value; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: T = probe()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")
        time.sleep(interval)
        last = probe()
    return last


def spawn(args: list[str], settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """Start `driftline <args>` as a real child process configured only by environment."""
    env = {**os.environ, **settings.env()}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "stream.cli", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Terminate a child process gracefully, killing it if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def http_get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()
    except OSError:
        return 0, b""


def http_answer(url: str, timeout: float = 3.0) -> tuple[int, bytes] | None:
    """The (status, body) of a GET once the server answers at all; None while nothing listens."""
    status, body = http_get(url, timeout)
    return (status, body) if status else None


def raw_get(sock: socket.socket, url: str, key: str) -> tuple[int, bytes]:
    """One GET on an open socket, its head sent in 4 KiB pieces as a network delivers a long request
    (h11 only checks its buffer limit while a head is incomplete; httpx refuses URLs over 64 KiB)."""
    head = f"GET {url} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    for i in range(0, len(head), 4096):
        sock.sendall(head[i:i + 4096])
        time.sleep(0.001)
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read()


def metric_value(text: str, name: str) -> float:
    """Sum of a Prometheus metric's samples (all label sets) in an exposition text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            if head == name or head.startswith(name + "{"):
                total += float(value)
    return total


async def read_topic(settings: Settings, topic: str, until: int | Callable[[list[ConsumerRecord]], bool],
                     timeout: float = 30.0, settle: float = 1.0) -> list[ConsumerRecord]:
    """Every record of a logical topic (from the start, no consumer group) until `until` records (or
    the predicate holds), then `settle` seconds more so a duplicate beyond the expected ones shows up.
    Raises TimeoutError when the condition is not met in time."""
    done = (lambda records: len(records) >= until) if isinstance(until, int) else until
    consumer = AIOKafkaConsumer(settings.topic(topic), bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(timeout):
            while not done(out):
                out += [r for records in (await consumer.getmany(timeout_ms=500)).values() for r in records]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settle
        while loop.time() < deadline:
            out += [r for records in (await consumer.getmany(timeout_ms=250)).values() for r in records]
    finally:
        await consumer.stop()
    return out
