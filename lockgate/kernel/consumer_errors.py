"""Which consumer errors mean the consumer is finished: close it and make a new one.

A static group member (``group.instance.id``) can be fenced — ``FENCED_INSTANCE_ID`` — when
its group's coordinator moves (a broker restarted or died) and its own retried join is
taken for another member with the same instance id. librdkafka then never delivers
another record to that consumer: every consumer that reads in a loop must notice and
replace it, or it sits silent with its partitions' lag growing.
"""

from __future__ import annotations

from confluent_kafka import KafkaError

__all__ = ["consumer_is_broken"]


def consumer_is_broken(err: KafkaError) -> bool:
    """True for errors after which this consumer can never consume again.

    librdkafka raises a fenced static member as FENCED_INSTANCE_ID first and as ``_FATAL``
    afterwards, and does not always set ``fatal()`` on the error it hands to ``poll``.
    """
    return bool(err.fatal()) or err.code() in (KafkaError._FATAL, KafkaError.FENCED_INSTANCE_ID)
