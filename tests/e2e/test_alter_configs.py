"""AlterConfigs and IncrementalAlterConfigs for topics, with confluent-kafka's and kafka-python's
admin clients: the change is stored (it survives a restart), shown by DescribeConfigs as a
dynamic topic config, and applied to the running partitions (segments roll at the new size,
retention deletes what the new limit no longer keeps) without a restart."""

import time

import pytest
from confluent_kafka import KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource
from confluent_kafka import Consumer
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType

from helpers import create_topic


def describe(admin, topic):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return list(admin.describe_configs([resource]).values())[0].result(10)


def incremental(admin, topic, *entries):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=list(entries))
    return list(admin.incremental_alter_configs([resource]).values())[0].result(10)


def segments(broker, topic, partition=0):
    return sorted((broker.data_dir / f"{topic}-{partition}").glob("*.log"))


def produce(bootstrap, topic, count, size=200):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "batch.num.messages": 1})
    for i in range(count):
        producer.produce(topic, value=b"x" * size, partition=0)
        producer.poll(0)
    assert producer.flush(30) == 0


def earliest(bootstrap, topic, partition=0):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "alter-offsets"})
    try:
        low, _ = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        return low
    finally:
        consumer.close()


def test_incremental_set_and_delete_are_stored_and_described(broker):
    create_topic(broker.bootstrap, "cfg-a", 2, **{"retention.ms": "600000"})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    incremental(
        admin,
        "cfg-a",
        ConfigEntry("segment.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    )
    described = describe(admin, "cfg-a")
    assert described["segment.ms"].value == "3600000"
    assert described["segment.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # Deleted: back to the broker's default (7 days), and no longer a topic override.
    assert described["retention.ms"].value == "604800000"
    assert described["retention.ms"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # Stored: the same after a restart.
    broker.restart()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    described = describe(admin, "cfg-a")
    assert described["segment.ms"].value == "3600000"
    assert described["segment.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert described["retention.ms"].value == "604800000"


def test_alter_configs_replaces_the_overrides(broker):
    create_topic(broker.bootstrap, "cfg-b", 1, **{"retention.ms": "600000", "segment.ms": "3600000"})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    # AlterConfigs (not incremental): the given set replaces every override.
    resource = ConfigResource(ConfigResource.Type.TOPIC, "cfg-b", set_config={"retention.bytes": "1048576"})
    list(admin.alter_configs([resource]).values())[0].result(10)
    described = describe(admin, "cfg-b")
    assert described["retention.bytes"].value == "1048576"
    assert described["retention.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert described["retention.ms"].value == "604800000", "left out: back to the default"
    assert described["segment.ms"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def test_kafka_python_alters_configs(broker):
    create_topic(broker.bootstrap, "cfg-kp", 1, **{"retention.ms": "600000"})
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    # IncrementalAlterConfigs (the broker advertises it) and, forced, AlterConfigs.
    for incremental_api, value in [(True, "1048576"), (False, "2097152")]:
        result = admin.alter_configs(
            [KConfigResource(ConfigResourceType.TOPIC, "cfg-kp", configs={"retention.bytes": value})],
            incremental=incremental_api,
        )
        assert "cfg-kp" in str(result) and "Error" not in str(result), result
        described = describe(AdminClient({"bootstrap.servers": broker.bootstrap}), "cfg-kp")
        assert described["retention.bytes"].value == value
        # kafka-python re-sends the other overrides with AlterConfigs: both keep retention.ms.
        assert described["retention.ms"].value == "600000"
    result = admin.alter_configs(
        [KConfigResource(ConfigResourceType.TOPIC, "cfg-kp", configs={"segment.bytes": "12"})],
        raise_on_unknown=False,
    )
    assert "InvalidConfiguration" in str(result), result
    admin.close()


def test_new_settings_apply_to_running_partitions(make_broker, tmp_path):
    config = tmp_path / "broker.toml"
    config.write_text('"log.retention.check.interval.ms" = 300\n')
    broker = make_broker("--config", str(config))
    create_topic(broker.bootstrap, "cfg-live", 1)
    produce(broker.bootstrap, "cfg-live", 50)
    assert len(segments(broker, "cfg-live")) == 1
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    # Small segments: the log rolls as it is written, without a restart.
    incremental(admin, "cfg-live", ConfigEntry("segment.bytes", "4096", incremental_operation=AlterConfigOpType.SET))
    produce(broker.bootstrap, "cfg-live", 200)
    rolled = len(segments(broker, "cfg-live"))
    assert rolled >= 5, rolled
    assert earliest(broker.bootstrap, "cfg-live") == 0
    # A size limit: the next retention check deletes the oldest segments.
    incremental(admin, "cfg-live", ConfigEntry("retention.bytes", "8192", incremental_operation=AlterConfigOpType.SET))
    deadline = time.time() + 10
    while earliest(broker.bootstrap, "cfg-live") == 0 and time.time() < deadline:
        time.sleep(0.2)
    assert earliest(broker.bootstrap, "cfg-live") > 0
    assert len(segments(broker, "cfg-live")) < rolled
    # A smaller batch limit: a 2,000-byte record is refused with MESSAGE_TOO_LARGE.
    incremental(admin, "cfg-live", ConfigEntry("max.message.bytes", "1000", incremental_operation=AlterConfigOpType.SET))
    errors = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 100000})
    producer.produce("cfg-live", value=b"y" * 2000, partition=0, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(20)
    assert errors and errors[0] is not None and errors[0].name() == "MSG_SIZE_TOO_LARGE", errors


def test_bad_changes_are_refused_with_kafka_error_codes(broker):
    create_topic(broker.bootstrap, "cfg-bad", 1)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    cases = [
        ("cfg-bad", ConfigEntry("flush.ms", "5", incremental_operation=AlterConfigOpType.SET), "INVALID_CONFIG"),
        ("cfg-bad", ConfigEntry("segment.bytes", "12", incremental_operation=AlterConfigOpType.SET), "INVALID_CONFIG"),
        ("cfg-bad", ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.APPEND), "INVALID_CONFIG"),
        # Compaction is not built yet: refused, not silently ignored.
        ("cfg-bad", ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET), "INVALID_CONFIG"),
        ("cfg-missing", ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.SET), "UNKNOWN_TOPIC_OR_PART"),
    ]
    for topic, entry, code in cases:
        with pytest.raises(KafkaException) as err:
            incremental(admin, topic, entry)
        assert err.value.args[0].name() == code, (entry, err.value)
    # Broker configs are static: INVALID_REQUEST, as Kafka answers for a read-only config.
    resource = ConfigResource(
        ConfigResource.Type.BROKER,
        "0",
        incremental_configs=[ConfigEntry("log.retention.ms", "5", incremental_operation=AlterConfigOpType.SET)],
    )
    with pytest.raises(KafkaException) as err:
        list(admin.incremental_alter_configs([resource]).values())[0].result(10)
    assert err.value.args[0].name() == "INVALID_REQUEST"
    # validate_only changes nothing.
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        "cfg-bad",
        incremental_configs=[ConfigEntry("retention.ms", "5000", incremental_operation=AlterConfigOpType.SET)],
    )
    list(admin.incremental_alter_configs([resource], validate_only=True).values())[0].result(10)
    assert describe(admin, "cfg-bad")["retention.ms"].value == "604800000"
    # None of it changed the topic.
    assert describe(admin, "cfg-bad")["segment.bytes"].value == "1073741824"
