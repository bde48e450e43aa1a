"""Controller-runtime-style machinery with no Falco knowledge: client, informers, work queue, controllers, manager."""

from typing import TYPE_CHECKING

from falco_operator.lazy import lazy_exports

if TYPE_CHECKING:
    from .apply import Applier, project
    from .backoff import Backoff
    from .cache import Cache
    from .client import Client
    from .controller import (
        GENERATION_CHANGED,
        LABELS_CHANGED,
        Controller,
        Predicate,
        Reconciler,
        Request,
        Result,
        any_of,
        controller_owner,
    )
    from .errors import ApiError, Conflict, Forbidden, Gone, Invalid, NotFound, TerminalError, Unauthorized
    from .events import EventRecorder
    from .informer import EventHandler, Informer
    from .leaderelection import LeaderElector, LeaderLost, check_timings, unique_identity
    from .logs import configure_logging, log_context
    from .manager import CacheSyncTimeout, Manager, ManagerOptions, run_process
    from .metrics import RuntimeMetrics
    from .resources import Resource, ResourceRegistry
    from .store import Store, object_key
    from .workqueue import ShutDown, WorkQueue, default_controller_rate_limiter

__all__ = [
    "GENERATION_CHANGED",
    "LABELS_CHANGED",
    "ApiError",
    "Applier",
    "Backoff",
    "Cache",
    "CacheSyncTimeout",
    "Client",
    "Conflict",
    "Controller",
    "EventHandler",
    "EventRecorder",
    "Forbidden",
    "Gone",
    "Informer",
    "Invalid",
    "LeaderElector",
    "LeaderLost",
    "Manager",
    "ManagerOptions",
    "NotFound",
    "Predicate",
    "Reconciler",
    "Request",
    "Resource",
    "ResourceRegistry",
    "Result",
    "RuntimeMetrics",
    "ShutDown",
    "Store",
    "TerminalError",
    "Unauthorized",
    "WorkQueue",
    "any_of",
    "check_timings",
    "configure_logging",
    "controller_owner",
    "default_controller_rate_limiter",
    "log_context",
    "object_key",
    "project",
    "run_process",
    "unique_identity",
]

__getattr__ = lazy_exports(__name__, __file__)
