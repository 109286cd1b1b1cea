"""The one request context of the SDK: the running app and the current request.

Exactly one ContextVar holds a `Context`: the `Runtime` of the running app (its audit log, secret
store and connectors) and, inside a web request, that request's `RequestInfo` (request id,
source address, actor). `audit.record`, `secret()`, `connector()`, `audit_trail()`, the SQL
connector's masking decision and the sign-in bookkeeping all read it from here.

The web app binds it once per request (`bind(runtime, info)`); commands and tests bind it once
for a block (`guardrails.core.runtime.bound(rt)`, which `runtime()` uses).

A second variable holds the database transactions opened explicitly (`with db.begin():`) in
this context, innermost last: `audit.record` writes a success event inside the innermost one of
its app, so the event commits with the change (guardrails.auditing.log).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # no import at run time: core.runtime imports the modules that import this one
    from guardrails.core.runtime import Runtime


@dataclass(frozen=True)
class Actor:
    """Who acts: `id` is the stable key (issuer#sub for people); `email` is for display."""

    id: str
    roles: tuple[str, ...] = ()
    email: str | None = None


@dataclass
class RequestInfo:
    """What the current request contributes to every audit event (set by guardrails.web)."""

    request_id: str | None = None
    source_ip: str | None = None
    actor: Actor | None = None


@dataclass(frozen=True)
class Context:
    runtime: Runtime | None = None
    request: RequestInfo | None = None


Token = contextvars.Token
# The only ContextVar of the SDK; other modules use the functions below, never the variable.
_current: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "guardrails_context", default=None
)
_NOTHING = Context()
# The explicit transactions open here: (owner, session) pairs, innermost last.
_transactions: contextvars.ContextVar[tuple[tuple[object, object], ...]] = contextvars.ContextVar(
    "guardrails_transactions", default=()
)


def current() -> Context:
    """What is bound here: the running app and the current request (each may be None)."""
    return _current.get() or _NOTHING


def current_runtime() -> Runtime | None:
    """The Runtime of the app (web request, command or test block) running here, if any."""
    return current().runtime


def current_request() -> RequestInfo | None:
    """The current web request's info (None outside a request)."""
    return current().request


def bind(runtime: Runtime | None, request: RequestInfo | None = None) -> Token:
    """Make `runtime` (and `request`) current until `unbind(token)`."""
    return _current.set(Context(runtime, request))


def unbind(token: Token) -> None:
    _current.reset(token)


def set_request(info: RequestInfo | None) -> Token:
    """Make `info` the current request's info, keeping the running app; undo with `unbind`."""
    return _current.set(replace(current(), request=info))


def set_actor(actor: Actor) -> None:
    """Record who the current request's caller is (after sign-in checks); no-op outside one.

    The RequestInfo is updated in place: dependencies may run in another context copy (a
    thread), and the audit events of the rest of the request must see the actor.
    """
    info = current().request
    if info is not None:
        info.actor = actor


def push_transaction(owner: object, session: object) -> None:
    """`session` began an explicit transaction, watched by `owner` (an audit log)."""
    _transactions.set((*_transactions.get(), (owner, session)))


def pop_transaction(session: object) -> None:
    """`session`'s transaction ended (a no-op in a context that never saw it begin)."""
    current_ = _transactions.get()
    if any(s is session for _o, s in current_):
        _transactions.set(tuple(p for p in current_ if p[1] is not session))


def active_transaction(owner: object) -> object | None:
    """The innermost explicit transaction's session watched by `owner`, if any."""
    for watcher, session in reversed(_transactions.get()):
        if watcher is owner:
            return session
    return None
