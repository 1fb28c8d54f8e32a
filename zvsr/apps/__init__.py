"""Replicated applications: the `App` interface, the msgpack adapter to the core, and the built-in
coordination service (`CoordinationApp`). This package knows nothing of the protocol beyond the
`StateMachine` interface it implements.
"""

from zvsr.apps.adapter import DEFAULT_APP_SPEC, AppLoadError, MsgpackStateMachine, load_app
from zvsr.apps.base import ERROR_APP_ERROR, ERROR_BAD_REQUEST, AnyApp, App, ContextApp, OpContext, error_result
from zvsr.apps.coordination import CoordinationApp

__all__ = [
    "DEFAULT_APP_SPEC",
    "ERROR_APP_ERROR",
    "ERROR_BAD_REQUEST",
    "AnyApp",
    "App",
    "AppLoadError",
    "ContextApp",
    "CoordinationApp",
    "MsgpackStateMachine",
    "OpContext",
    "error_result",
    "load_app",
]
