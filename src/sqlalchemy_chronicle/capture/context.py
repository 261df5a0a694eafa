"""Who made a change, and why: a framework-neutral versioning context.

:func:`versioning_context` sets, for the code running inside it, the user and the
remote address recorded on every transaction row written there, plus any extra
metadata (stored by :class:`~sqlalchemy_chronicle.plugins.TransactionMetaPlugin`)::

    with versioning_context(user_id=current_user.id, remote_addr=request_ip,
                            reason="bulk import"):
        session.commit()

It is built on :mod:`contextvars`, so each thread and each asyncio task sees its
own value, and a nested context overrides the outer one key by key. It also works
as a decorator, on plain and on ``async`` functions.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar, cast

from ..exc import VersioningStateError

__all__ = ["VersioningContext", "current_context", "versioning_context"]

F = TypeVar("F", bound=Callable[..., Any])


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class VersioningContext:
    """The values in force: ``user_id``, ``remote_addr`` and extra ``meta`` keys."""

    user_id: Any = UNSET
    remote_addr: Any = UNSET
    meta: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def merged(self, inner: VersioningContext) -> VersioningContext:
        """This context with ``inner``'s given values taking precedence."""
        return VersioningContext(
            user_id=self.user_id if inner.user_id is UNSET else inner.user_id,
            remote_addr=self.remote_addr if inner.remote_addr is UNSET else inner.remote_addr,
            meta=MappingProxyType({**self.meta, **inner.meta}),
        )

    def transaction_values(self) -> dict[str, Any]:
        """The transaction-row columns this context sets."""
        values = {}
        if self.user_id is not UNSET:
            values["user_id"] = self.user_id
        if self.remote_addr is not UNSET:
            values["remote_addr"] = self.remote_addr
        return values


_current: contextvars.ContextVar[VersioningContext | None] = contextvars.ContextVar(
    "sqlalchemy_chronicle_context", default=None
)


def current_context() -> VersioningContext | None:
    """The versioning context in force here, or None outside any."""
    return _current.get()


class versioning_context:
    """Record ``user_id``, ``remote_addr`` and ``meta`` on the transactions written inside.

    Use it as ``with versioning_context(...):`` or as a decorator. Values not given
    are inherited from an enclosing context.
    """

    def __init__(self, user_id: Any = UNSET, remote_addr: Any = UNSET, **meta: Any) -> None:
        self._values = VersioningContext(
            user_id=user_id, remote_addr=remote_addr, meta=MappingProxyType(dict(meta))
        )
        # One entry per open ``with``: the token to reset and the context object it set.
        # One instance may be open in several threads or tasks at once (a module-level
        # context, a decorator), which leave in any order; each leaves by its own entry,
        # found by the (always new) context object that is current where it leaves.
        self._entries: list[tuple[contextvars.Token[VersioningContext | None], object]] = []
        self._lock = threading.Lock()

    def __enter__(self) -> VersioningContext:
        outer = _current.get()
        # Always a new object, even with no outer context: __exit__ finds its entry by it.
        context = dataclasses.replace(self._values) if outer is None else outer.merged(self._values)
        token = _current.set(context)
        with self._lock:
            self._entries.append((token, context))
        return context

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        current = _current.get()
        with self._lock:
            for i in range(len(self._entries) - 1, -1, -1):
                if self._entries[i][1] is current:
                    token = self._entries.pop(i)[0]
                    break
            else:
                raise VersioningStateError(
                    "versioning_context exited where it was not the innermost context; "
                    "close nested versioning contexts in the reverse order of opening them."
                )
        _current.reset(token)

    async def __aenter__(self) -> VersioningContext:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def _copy(self) -> versioning_context:
        copy = versioning_context.__new__(versioning_context)
        copy._values = self._values
        copy._entries = []
        copy._lock = threading.Lock()
        return copy

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._copy():
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._copy():
                return func(*args, **kwargs)

        return cast(F, wrapper)
