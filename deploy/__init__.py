"""The local stack: real Apache Kafka (KRaft) from Maven Central, the processor and the sink.

Modules:

    stack          Stack: up / down / status of every local process (idempotent)
    kafka_broker   the broker: jars via Maven, storage format, start, wait for metadata
    processes      pid files and process groups, with a start-time check against pid reuse
    identity       the processor key and the CLI's service identity, created on first use
    smoke          the probe that proves the stack decides
    settings       StackSettings (LOCKGATE_* environment)
    errors         StackError and its tree

``lockgate up`` / ``down`` / ``status`` are thin wrappers around :mod:`deploy.stack`.
"""

__all__ = ["errors", "identity", "kafka_broker", "processes", "settings", "smoke", "stack"]
