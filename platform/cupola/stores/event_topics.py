"""Kafka topics of stream feature groups, through confluent-kafka (librdkafka).

The client is imported only when a stream or a push to Kafka needs it, so the `kafka` extra is
optional like the Cassandra driver. Messages are JSON objects keyed by the entity's encoded key,
so Kafka's default partitioner keeps each entity's events in one partition, in order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from cupola.errors import InvalidInput, Unavailable

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Producer

    from cupola.config import Settings

CLIENT_LOG = logging.getLogger("cupola.kafka")  # librdkafka's own log lines go through Python logging, not stderr


def _client_module() -> Any:
    try:
        import confluent_kafka
    except ImportError:
        raise InvalidInput(
            "stream feature groups need confluent-kafka: pip install 'cupola[kafka]'", "kafka_bootstrap_servers"
        ) from None
    return confluent_kafka


def _brokers(settings: "Settings") -> str:
    if not settings.kafka_bootstrap_servers:
        raise InvalidInput(
            "no Kafka configured: set CUPOLA_KAFKA_BOOTSTRAP_SERVERS (for a local broker: cluster/kafka/start)",
            "kafka_bootstrap_servers",
        )
    return settings.kafka_bootstrap_servers


def create_producer(settings: "Settings") -> "Producer":
    """A producer that waits for the broker's acknowledgement (acks=all) and batches for 5 ms."""
    return _client_module().Producer(
        {
            "bootstrap.servers": _brokers(settings),
            "acks": "all",
            "linger.ms": 5,
            "enable.idempotence": True,
            "logger": CLIENT_LOG,
        }
    )


def create_consumer(settings: "Settings", group_id: str) -> "Consumer":
    """A consumer that never commits offsets itself: the stream worker keeps them in its checkpoints."""
    return _client_module().Consumer(
        {
            "bootstrap.servers": _brokers(settings),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
            "logger": CLIENT_LOG,
        }
    )


def ensure_topic(settings: "Settings", topic: str, partitions: int = 2) -> int:
    """Create `topic` when it does not exist; returns its partition count."""
    kafka = _client_module()
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": _brokers(settings)}, logger=CLIENT_LOG)
    try:
        existing = admin.list_topics(timeout=10).topics
        if topic not in existing:
            futures = admin.create_topics([NewTopic(topic, partitions, 1)])
            try:
                futures[topic].result(timeout=30)
            except kafka.KafkaException as error:
                if error.args[0].code() != kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
            existing = admin.list_topics(topic, timeout=10).topics
        return len(existing[topic].partitions)
    except kafka.KafkaException as error:
        raise Unavailable(f"Kafka at {settings.kafka_bootstrap_servers}: {error}") from None


def produce_json(producer: "Producer", topic: str, messages: Iterable[tuple[bytes, Mapping[str, Any]]]) -> int:
    """Send (key, JSON object) messages and wait until every one is acknowledged; returns how many were sent."""
    errors: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            errors.append(str(error))

    sent = 0
    for key, document in messages:
        value = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let librdkafka send some, then retry
                producer.poll(0.05)
        sent += 1
    remaining = producer.flush(30)
    if errors or remaining:
        raise Unavailable(f"Kafka did not acknowledge {len(errors) + remaining} of {sent} events: {errors[:1]}")
    return sent
