"""The local stack: real Apache Kafka (KRaft) from Maven Central, the processor and the sink.

``lockgate up`` / ``down`` / ``status`` are thin wrappers around :mod:`deploy.stack`.
"""
