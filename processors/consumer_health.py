"""Is the processor deciding, or up but not consuming? Its group's lag, judged from outside Faust.

``/healthz`` (in ``processors.app``) says the worker's web server answers; it says nothing
about the Faust consumer behind it. :func:`install_consumer_health` adds a
:class:`~lockgate.kernel.consumer_health.LagProbe` over the processor group's source topics and serves
its judgement at ``/healthz/consumer`` (``state``: consuming / idle / stalled / unknown),
which ``lockgate status`` shows, plus ``lockgate_processor_lag`` and
``lockgate_processor_stalled`` on ``/metrics``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Gauge

from lockgate.kernel.consumer_health import ConsumerHealth, LagProbe, LagReading
from processors.settings import ProcessorSettings
from schemas.topics import Topics

__all__ = ["CONSUMER_HEALTH_PATH", "install_consumer_health"]

CONSUMER_HEALTH_PATH = "/healthz/consumer"

LAG = Gauge("lockgate_processor_lag", "End offset minus the processor group's committed offset",
            ["topic", "partition"])
STALLED = Gauge("lockgate_processor_stalled",
                "1 while a source partition has lag and no commit for the stall window (up but not consuming)")


def _record(reading: LagReading) -> None:
    for (topic, partition), lag in reading.lag.items():
        LAG.labels(topic, str(partition)).set(lag)


def install_consumer_health(app: Any, settings: ProcessorSettings) -> ConsumerHealth:
    """Probe the group of ``app`` (its id) on the topics its agents consume; serve the verdict."""
    topics = Topics(settings.topic_prefix)
    health = ConsumerHealth(settings.stall_after_s)
    probe = LagProbe(settings.bootstrap_servers, app.conf.id,
                     [topics.actions, topics.policies, topics.reviews], health, _record)
    STALLED.set_function(lambda: 1.0 if health.state() == "stalled" else 0.0)

    @app.page(CONSUMER_HEALTH_PATH)  # type: ignore[untyped-decorator]
    async def consumer_health(web: Any, request: Any) -> Any:
        return web.json(health.snapshot())

    @app.task  # type: ignore[untyped-decorator]
    async def start_probe() -> None:
        probe.start()

    _ = (consumer_health, start_probe)
    return health
