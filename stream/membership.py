"""Evicting the consumer-group member a killed worker left behind.

A worker that dies without leaving its group (SIGKILL, OOM kill, power loss) stays a member until
the coordinator expires its session. Some Kafka-protocol brokers (noida-db among them) keep such a
member as the group leader during the next rebalance, so the restarted worker never gets an
assignment. Every worker therefore records its member id in its data dir, and on start sends
LeaveGroup for the id its predecessor recorded. On Apache Kafka this is harmless: an unknown or
already-expired member is answered with UNKNOWN_MEMBER_ID, which we ignore.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.protocol.group import LeaveGroupRequest

log = logging.getLogger(__name__)


def member_file(data_dir: Path, group_id: str) -> Path:
    return data_dir / "faust" / f"{group_id}.member"


def record_member(data_dir: Path, group_id: str, member_id: str) -> None:
    path = member_file(data_dir, group_id)
    if member_id and (not path.exists() or path.read_text() != member_id):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(member_id)


async def evict_previous_member(bootstrap: str, data_dir: Path, group_id: str) -> str | None:
    """Send LeaveGroup for the member id a previous worker of this data dir recorded."""
    path = member_file(data_dir, group_id)
    if not path.exists():
        return None
    member_id = path.read_text().strip()
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        await client.bootstrap()
        node = await client.coordinator_lookup(CoordinationType.GROUP, group_id)
        response = await client.send(node, LeaveGroupRequest(group_id, member_id))
        log.info("left group %s for previous member %s (error code %s)", group_id, member_id,
                 getattr(response, "error_code", "?"))
    except Exception as exc:  # best effort: the session timeout still applies
        log.warning("could not evict previous member %s: %s", member_id, exc)
        return None
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        path.unlink(missing_ok=True)
    return member_id
