"""The processor: the Faust app that decides, and the pure cores it runs.

Modules:

    app           the Faust app: agents as thin shells over the cores
    decider       the pure decision core: proposal in, signed verdict and audit events out
    worker        ``python -m processors.worker``: the process entry point
    settings      ProcessorSettings (LOCKGATE_* environment)
    policy        the policy language (sub-package; no Kafka dependency)
    errors        PolicyError and its tree
"""

__all__ = ["app", "decider", "errors", "policy", "settings", "worker"]
