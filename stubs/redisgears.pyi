# Type stub for `redisgears`, the native module the gears runtime builds
# (gears-python/src/api.rs and aio.rs) before the prelude runs.
#
# Public names here are exactly the module's attributes once the prelude
# has run: every top-level `def`, `class` and assignment below without a
# leading underscore. Plain imports are not re-exported (stub rule), and
# `_`-prefixed names exist only for typing.
#
# Most names are the same objects a script sees as globals (see gears.pyi).
# The prelude adds the 1.2 aliases clients import (executeCommand,
# getMyHashTag, config_get, atomicCtx, gearsFutureCtx, callNext,
# overrideReply, flatError). A few names (run,
# register, shard_id, atomic_enter, atomic_exit, gate_enter, gate_leave,
# current_acting) are the runtime's own plumbing, used by the prelude and
# not meant for scripts.

import asyncio
from typing import Any, Callable, Coroutine, Literal, Mapping, NoReturn

import gears as _gears

_LogLevel = Literal["debug", "verbose", "notice", "warning"]

# Exceptions.

class GearsError(Exception):
    """The error the runtime raises for misuse of its API and for failed
    Redis commands run through `execute`. Its run-time class name is
    `gears.error`, as in RedisGears 1.2."""

class GearsFlatError(Exception):
    """An error whose message goes to the execution's error list as is,
    without a traceback (raised by `flat_error`)."""

class ForceStoppedError(BaseException):
    """Raised inside a step when RG.ABORTEXECUTION stops its execution."""

# Redis commands and the current command.

def execute(command: str, *args: object) -> Any:
    """Run a Redis command and return its reply (an error reply raises
    GearsError). Arguments that are not bytes are passed through str()."""

executeCommand = execute  # the name gearsclient and rgsync import

def call_next(*args: object) -> Any:
    """Inside a command hook: run the next hook, or the hooked command
    itself, with `args`, and return its reply."""

callNext = call_next

def override_reply(value: Any) -> None:
    """Replace the reply the client of the linked command receives (once).
    A text starting with '-' becomes an error reply, '+' a status reply."""

overrideReply = override_reply

def flatError(msg: str) -> NoReturn:
    """Raise GearsFlatError(msg): the error shows as `msg`, without a
    traceback (1.2's name for `flat_error`)."""

# Shard information, configuration and logging.

def log(message: str, level: _LogLevel = "notice") -> None:
    """Write `message` to the Redis log at `level` (an unknown level
    raises GearsError)."""

def hashtag() -> str:
    """A hashtag that maps to a slot owned by this shard."""

getMyHashTag = hashtag

def shard_id() -> str | None:
    """This shard's id when it is known without a command (used by
    ShardsIDReader); None otherwise. Runtime plumbing."""

def configGet(key: str) -> int | str | None:
    """The value of a gears configuration key, None when it is not set."""

config_get = configGet  # the name gearsclient imports

# Atomic blocks.

# The prelude's `atomic` class itself: `with atomicCtx():` holds the Redis
# lock for the whole block; its __exit__ takes any number of arguments.
atomicCtx = _gears.atomic

def atomic_enter() -> None:
    """Take the Redis lock (entering an atomic block). Runtime plumbing:
    scripts use `atomic()`."""

def atomic_exit() -> None:
    """Release the lock taken by `atomic_enter`. Runtime plumbing."""

def isInAtomicBlock() -> bool:
    """Whether the calling code runs inside an atomic block."""

# Coroutines and futures.

class gearsFuture:
    """A pending answer for the record of the step that created it.

    Create it inside a step (map, filter, foreach, flatmap, accumulate,
    aggregate...) and return it from that step; the record then waits until
    `continueRun` or `continueFailed` is called, from any thread. At run
    time the name `gearsFuture` is a factory function, not a type: use it
    for calls and annotations only, not with isinstance()."""

    def __init__(self) -> None: ...
    def continueRun(self, value: Any) -> None:
        """Resume the waiting record with `value` as the step's result."""

    def continueFailed(self, error: object) -> None:
        """Fail the waiting record; str(error) becomes its error text."""

# What setFutureResults, setFutureException and runCoroutine accept.
_Future = asyncio.Future[Any] | gearsFuture

gearsFutureCtx = gearsFuture  # redgrease probes for this name

def isAsyncAllow() -> bool:
    """Whether the running execution may wait for a coroutine or a future
    (False inside MULTI/EXEC or Lua)."""

def createFuture() -> asyncio.Future[Any]:
    """A future of the gears event loop for a coroutine to await; resolve it
    with `setFutureResults` or `setFutureException` from any thread."""

def setFutureResults(f: _Future, res: Any) -> None:
    """Resolve `f` (from `createFuture`, or a gearsFuture) with `res`."""

def setFutureException(f: _Future, ex: BaseException | type[BaseException] | str) -> None:
    """Fail `f` with `ex`; a text becomes a GearsError."""

def runCoroutine(
    cr: Coroutine[Any, Any, Any],
    f: _Future | None = None,
    delay: float | None = None,
) -> None:
    """Run `cr` on the gears event loop after `delay` seconds (0 when None),
    as the caller; when `f` is given it gets the coroutine's outcome."""

# Time events.

def registerTimeEvent(seconds: float, callback: Callable[[], Any], key: str | bytes) -> None:
    """Call `callback` every `seconds` seconds. The event lives in the Redis
    key `key` (deleting it stops the event) and survives restarts."""

# Runtime plumbing used by the prelude.

class _StepActing:
    def run(self, callback: Any, args: tuple[Any, ...]) -> Any: ...
    def send(self, coro: Any, value: Any) -> tuple[bool, Any]: ...
    def throw(self, coro: Any, exc: Any) -> tuple[bool, Any]: ...

def run(
    reader: str,
    arg: Any,
    steps: list[Any],
    desc: str | None,
    kwargs: Mapping[str, Any],
) -> asyncio.Future[Any] | None:
    """Start (or, at the top level of a script, prepare) an execution of
    `steps`. Runtime plumbing behind `GearsBuilder.run`."""

def register(
    reader: str,
    prefix: Any,
    steps: list[Any],
    desc: str | None,
    kwargs: Mapping[str, Any],
) -> str:
    """Register `steps` on `reader`; returns the registration id. Runtime
    plumbing behind `GearsBuilder.register`."""

def gate_enter() -> None:
    """The event-loop thread enters the runtime's gate. Runtime plumbing."""

def gate_leave() -> None:
    """The event-loop thread leaves the runtime's gate. Runtime plumbing."""

def current_acting() -> _StepActing:
    """Who the calling code acts as (user, database, command). Runtime
    plumbing."""
