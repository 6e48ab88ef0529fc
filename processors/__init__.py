"""Lockgate processors: the Faust app and the pure policy language it evaluates.

The policy language (``policy_files``, ``policy_engine``, ``sql_facts``, ``policy_cases``)
has no Kafka dependency, so it can be tested and benchmarked offline.
"""
