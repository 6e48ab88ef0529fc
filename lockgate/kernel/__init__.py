"""The kernel below every room: root errors, the home directory, Kafka helpers, durations.

Everything imports it; it imports nothing of Lockgate's (import-linter contracts in
``pyproject.toml``). Modules: :mod:`~lockgate.kernel.errors` (``LockgateError``,
``ConfigError``), :mod:`~lockgate.kernel.home` (``Home``: every path under
``LOCKGATE_HOME``), :mod:`~lockgate.kernel.kafka_offsets` (watermarks with retries),
:mod:`~lockgate.kernel.partition_reader` (committed records: a whole partition or its tail),
:mod:`~lockgate.kernel.topic_admin` (create topics, report drift),
:mod:`~lockgate.kernel.fetch_batching` (fewer, fuller fetches for consumers off the decision path),
:mod:`~lockgate.kernel.durations` (the one duration grammar).
"""

from lockgate.kernel.errors import ConfigError, LockgateError

__all__ = ["ConfigError", "LockgateError"]
