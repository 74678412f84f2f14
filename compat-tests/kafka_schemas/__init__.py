"""Kafka 4.1 message schemas that kafka-python 3 does not ship.

kafka-python generates its request and response classes from Kafka's JSON message
schemas (``kafka/protocol/schemas/resources/*.json``), but it has none for the KIP-848
consumer group APIs: ConsumerGroupHeartbeat (key 68) and ConsumerGroupDescribe (key 69).
The four ``*.json`` files here are Kafka's own, unchanged, from
``clients/src/main/resources/common/message/`` of Apache Kafka 4.1.0 (as packaged in
``kafka-clients-4.1.0.jar``, commit 13f70256db3c994c), license headers included. Both
APIs there have ``validVersions`` "0-1".

kafka-python's ``ApiMessage`` metaclass loads them with the ``load_json`` class keyword::

    import kafka_schemas

    class ConsumerGroupHeartbeatRequest(ApiMessage, load_json=kafka_schemas):
        pass

The class name picks the file (``<name>.json``) in this package.
"""
