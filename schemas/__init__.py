"""The contracts between the rooms: Avro schemas, the codec, record shapes, the topic catalogue.

Modules:

    codec         Avro single-object encoding with typed errors; released schema sets
    evolution     FULL-compatibility checks between schema versions
    records       field lists read from the .avsc files; AuditKind; the audit-event and
                  dead-letter constructors
    topics        the topic catalogue (names, partitions, configs)
    errors        CodecError and its tree

The ``*.avsc`` files are the contracts themselves (docs/CONTRACTS.md).
"""

__all__ = ["codec", "errors", "evolution", "records", "topics"]
