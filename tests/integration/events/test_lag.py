"""Consumer lag as events.lag computes it, against the real Kafka: a group whose committed offsets
trail the end of a partition by exactly three messages."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from events import topics
from events.lag import CONSUMER_LAG, consumer_lag, sample_lag


async def test_lag_is_end_minus_committed_over_the_held_partitions(kafka_bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(topics.PRODUCTS, b"{}", key=f"lag-{i}".encode(), partition=0)
    finally:
        await producer.stop()

    group = f"lag-test-{uuid.uuid4().hex}"
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topics.PRODUCTS, p) for p in range(topics.PARTITIONS)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        behind = {tp: ends[tp] - (3 if tp.partition == 0 else 0) for tp in partitions}
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in behind.items()})

        assert await consumer_lag(consumer) == {topics.PRODUCTS: 3}

        class Subscriber:  # the attributes sample_lag reads from FastStream's subscribers
            group_id = group
            topic_names = (topics.PRODUCTS,)

            def __init__(self, consumer: AIOKafkaConsumer) -> None:
                self.consumer = consumer

        await sample_lag([Subscriber(consumer)])
        assert CONSUMER_LAG.labels(group, topics.PRODUCTS)._value.get() == 3
    finally:
        await consumer.stop()
