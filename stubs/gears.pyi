# Type stub for the globals an RG.PYEXECUTE script sees.
#
# There is no importable `gears` module at run time: every name below is
# already a global of the script (the runtime copies its prelude's globals,
# gears-python/src/prelude.py, into each script). The stub only exists so
# that editors and type checkers know these names; see README.md.
#
# Public names are exactly the runtime's public globals: every top-level
# `def`, `class` and assignment below without a leading underscore, plus
# the `X as X` re-exports. Plain `typing` imports are not re-exported (stub
# rule), and `_`-prefixed names exist only for typing.

import asyncio
from typing import (
    Any,
    Callable,
    Coroutine,
    Generic,
    Iterable,
    Literal,
    NoReturn,
    TypeVar,
    overload,
)

from typing_extensions import Self, deprecated

import redisgears as redisgears
from redisgears import (
    ForceStoppedError as ForceStoppedError,
    GearsError as GearsError,
    GearsFlatError as GearsFlatError,
    gearsFuture as gearsFuture,
)

_T = TypeVar("_T")
# The reader a builder was made for; the checker uses it to pick the right
# keyword arguments of run() and register().
_R = TypeVar("_R", bound=str)

_LogLevel = Literal["debug", "verbose", "notice", "warning"]
_RunMode = Literal["async", "async_local"]
_RegisterMode = Literal["sync", "async", "async_local"]
# Read case-insensitively by the runtime.
_OnFailedPolicy = Literal["continue", "abort", "retry", "Continue", "Abort", "Retry"]
_ConfigValue = int | str

# Callback shapes (records are plain Python values: dict, str, list...).
# Any step callback may also return a coroutine or a gearsFuture to answer
# later (except extractors and batch reducers).
_Mapper = Callable[[Any], Any]
_Extractor = Callable[[Any], Any]
_Accumulator = Callable[[Any, Any], Any]  # (accumulator, record) -> accumulator
_Reducer = Callable[[Any, Any, Any], Any]  # (key, accumulator, record) -> accumulator
_BatchReducer = Callable[[Any, list[Any]], Any]  # (key, records) -> record
_PyReaderFunc = Callable[[], Iterable[Any]]
_OnRegistered = Callable[[], Any]
_Future = asyncio.Future[Any] | gearsFuture

class GearsBuilder(Generic[_R]):
    """Builds a gears function: a reader followed by operations, ended by
    `run()` (a one-off batch execution) or `register()` (an event handler).

    Every operation appends to the flow and returns the builder itself, so
    calls chain. Operation arguments are positional only, except those of
    the composite operations (aggregate, aggregateby, countby, sort, avg).
    """

    reader: _R
    defaultArg: Any
    desc: str | None
    steps: list[tuple[str, str, Any, Any]]

    @overload
    def __init__(
        self: GearsBuilder[Literal["KeysReader"]],
        reader: Literal["KeysReader"] = "KeysReader",
        defaultArg: str | bytes = "*",
        desc: str | None = None,
    ) -> None:
        """Records are keys of the database: dicts with 'key', 'value',
        'type' and 'event'. `defaultArg` is the key glob run() uses."""

    @overload
    def __init__(
        self: GearsBuilder[Literal["KeysOnlyReader"]],
        reader: Literal["KeysOnlyReader"],
        defaultArg: str = "*",
        desc: str | None = None,
    ) -> None:
        """Records are key names (str) found by SCAN. run() only."""

    @overload
    def __init__(
        self: GearsBuilder[Literal["StreamReader"]],
        reader: Literal["StreamReader"],
        defaultArg: str = "*",
        desc: str | None = None,
    ) -> None:
        """Records are stream entries: dicts with 'key', 'id' and 'value'
        (the entry's fields). `defaultArg` is the stream key run() reads."""

    @overload
    def __init__(
        self: GearsBuilder[Literal["PythonReader"]],
        reader: Literal["PythonReader"],
        defaultArg: Any = "*",
        desc: str | None = None,
    ) -> None:
        """Records are the items of the iterable a function returns (the
        function is run()'s `arg`, or `defaultArg`). run() only."""

    @overload
    def __init__(
        self: GearsBuilder[Literal["ShardsIDReader"]],
        reader: Literal["ShardsIDReader"],
        defaultArg: Any = "*",
        desc: str | None = None,
    ) -> None:
        """One record per shard: the shard's id. run() only."""

    @overload
    def __init__(
        self: GearsBuilder[Literal["CommandReader"]],
        reader: Literal["CommandReader"],
        defaultArg: Any = "*",
        desc: str | None = None,
    ) -> None:
        """Records are command argument lists, from RG.TRIGGER or from a
        hooked command. register() only."""

    @overload
    def __init__(
        self: GearsBuilder[str],
        reader: str,
        defaultArg: Any = "*",
        desc: str | None = None,
    ) -> None:
        """A reader named by a value the checker can't see: run() and
        register() then accept any keyword arguments."""

    # Operations.

    def map(self, f: _Mapper, /) -> Self:
        """Replace each record with f(record)."""

    def filter(self, f: _Mapper, /) -> Self:
        """Keep only the records for which f(record) is true."""

    def foreach(self, f: _Mapper, /) -> Self:
        """Call f(record) for its side effects; records pass unchanged."""

    def flatmap(self, f: _Mapper, /) -> Self:
        """Replace each record with the items of the list f(record) returns
        (a value that is not a list stays one record)."""

    def accumulate(self, f: _Accumulator, /) -> Self:
        """Fold this shard's records into one: f(accumulator, record) returns
        the new accumulator (None on the first call)."""

    def localgroupby(self, extractor: _Extractor, reducer: _Reducer, /) -> Self:
        """Group this shard's records by extractor(record) and fold each
        group with reducer(key, accumulator, record). Records become
        {'key': ..., 'value': ...}."""

    def groupby(self, extractor: _Extractor, reducer: _Reducer, /) -> Self:
        """Like localgroupby, but first moves each record to the shard that
        owns its key, so groups span the cluster."""

    def batchgroupby(self, extractor: _Extractor, reducer: _BatchReducer, /) -> Self:
        """Move records to the shard owning extractor(record), then call
        reducer(key, records) once per key with the whole group."""

    def repartition(self, extractor: _Extractor, /) -> Self:
        """Move each record to the shard that owns extractor(record)."""

    def limit(self, count: int, offset: int = 0, /) -> Self:
        """Keep `count` records, after skipping the first `offset`."""

    def collect(self) -> Self:
        """Bring every shard's records to the shard that started the
        execution."""

    def aggregate(self, zero: Any, seqOp: _Accumulator, combOp: _Accumulator) -> Self:
        """Fold each shard's records with seqOp(acc, record) starting from a
        copy of `zero`, then fold the shards' results together with
        combOp(acc, shard_result)."""

    def aggregateby(
        self,
        extractor: _Extractor,
        zero: Any,
        seqOp: _Reducer,
        combOp: _Reducer,
    ) -> Self:
        """Per key: fold locally with seqOp(key, acc, record), then combine
        the shards' values with combOp(key, acc, value). Records become
        {'key': ..., 'value': ...}."""

    def count(self) -> Self:
        """Replace the records with their number."""

    def countby(self, extractor: _Extractor = ...) -> Self:
        """Count records per extractor(record) (default: the record itself);
        records become {'key': ..., 'value': count}."""

    def sort(self, reverse: bool = True) -> Self:
        """Sort all records on one shard; descending unless reverse=False."""

    def distinct(self) -> Self:
        """Keep one record of each distinct (hashable) value."""

    def avg(self, extractor: Callable[[Any], float] = ...) -> Self:
        """Replace the records with the mean of extractor(record) (default:
        float(record))."""

    # run(): one-off execution. Returns None at the top level of a script
    # (RG.PYEXECUTE replies with the results); anywhere else it starts the
    # execution and returns an asyncio future of [results, errors].

    @overload
    def run(
        self: GearsBuilder[Literal["KeysReader"]],
        arg: str | bytes | None = None,
        convertToStr: bool = True,
        collect: bool = True,
        *,
        noScan: bool = False,
        readValue: bool = True,
        mode: _RunMode = "async",
    ) -> Any:
        """Run over the keys matching the glob `arg` (default: defaultArg).
        noScan: `arg` is one exact key name. readValue=False: records carry
        no value and no type. convertToStr / collect append str() and
        collect() steps."""

    @overload
    def run(
        self: GearsBuilder[Literal["KeysOnlyReader"]],
        arg: str | None = None,
        convertToStr: bool = True,
        collect: bool = True,
        *,
        pattern: str = "*",
        count: int = 1000,
        noScan: bool = False,
        patternGenerator: Callable[[], tuple[str, bool]] | None = None,
        mode: _RunMode = "async",
    ) -> Any:
        """Run over key names. pattern (or arg): the SCAN glob; count: SCAN's
        COUNT; noScan: the pattern is one exact key name; patternGenerator():
        called on each shard, returns (pattern, noScan) and wins over both."""

    @overload
    def run(
        self: GearsBuilder[Literal["StreamReader"]],
        arg: str | None = None,
        convertToStr: bool = True,
        collect: bool = True,
        *,
        fromId: str = "0-0",
        mode: _RunMode = "async",
    ) -> Any:
        """Run over the entries of the stream `arg` (default: defaultArg)
        from id `fromId`."""

    @overload
    def run(
        self: GearsBuilder[Literal["PythonReader"]],
        arg: _PyReaderFunc | None = None,
        convertToStr: bool = True,
        collect: bool = True,
        *,
        mode: _RunMode = "async",
    ) -> Any:
        """Run over the items of the iterable (or generator) that arg()
        returns (default: defaultArg)."""

    @overload
    def run(
        self: GearsBuilder[Literal["ShardsIDReader"]],
        arg: Any = None,
        convertToStr: bool = True,
        collect: bool = True,
        *,
        mode: _RunMode = "async",
    ) -> Any:
        """Run once per shard, with the shard's id as the record."""

    @overload
    def run(
        self: GearsBuilder[str],
        arg: Any = None,
        convertToStr: bool = True,
        collect: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Run the flow once. Keyword arguments depend on the reader:
        KeysReader: noScan, readValue, mode; KeysOnlyReader: pattern, count,
        noScan, patternGenerator, mode; StreamReader: fromId, mode;
        PythonReader, ShardsIDReader: mode ('async' or 'async_local').
        CommandReader can't run."""

    # register(): an event handler. Returns the registration id.

    @overload
    def register(
        self: GearsBuilder[Literal["KeysReader"]],
        prefix: str | bytes = "*",
        convertToStr: bool = True,
        collect: bool = True,
        *,
        mode: _RegisterMode = "async",
        onRegistered: _OnRegistered | None = None,
        eventTypes: Iterable[str] | None = None,
        keyTypes: Iterable[str] | None = None,
        readValue: bool = True,
        commands: Iterable[str] | None = None,
        regex: str | bytes = ...,
    ) -> str:
        """Trigger on keyspace events of keys starting with `prefix`.
        eventTypes: only these events (e.g. 'set', 'hset', 'del', 'keymiss').
        keyTypes: only these types ('string', 'hash', 'list', 'set', 'zset',
        'stream', 'module', 'empty'). commands: only events caused by these
        commands, with the client linked (see override_reply). readValue:
        False leaves value/type out. onRegistered(): called on each shard
        once registered. regex: deprecated name of prefix."""

    @overload
    def register(
        self: GearsBuilder[Literal["StreamReader"]],
        prefix: str | bytes = "*",
        convertToStr: bool = True,
        collect: bool = True,
        *,
        mode: _RegisterMode = "async",
        onRegistered: _OnRegistered | None = None,
        batch: int = 1,
        duration: int = 0,
        onFailedPolicy: _OnFailedPolicy = "continue",
        onFailedRetryInterval: int = 1,
        trimStream: bool = True,
        regex: str | bytes = ...,
    ) -> str:
        """Trigger on new entries of streams whose key starts with `prefix`.
        batch: entries per execution; duration: ms to wait before running a
        partial batch (0: never); onFailedPolicy: what a failed execution
        does ('continue', 'abort', 'retry'; mode='sync' needs 'continue');
        onFailedRetryInterval: seconds between retries; trimStream: delete
        the entries once processed."""

    @overload
    def register(
        self: GearsBuilder[Literal["CommandReader"]],
        prefix: Any = "*",
        convertToStr: bool = True,
        collect: bool = True,
        *,
        trigger: str,
        inorder: bool = False,
        mode: _RegisterMode = "async",
        onRegistered: _OnRegistered | None = None,
    ) -> str:
        """Run on `RG.TRIGGER <trigger> args...`; the record is
        [trigger, *args]. inorder: with async_local, one call at a time in
        arrival order."""

    @overload
    def register(
        self: GearsBuilder[Literal["CommandReader"]],
        prefix: Any = "*",
        convertToStr: bool = True,
        collect: bool = True,
        *,
        hook: str,
        keyprefix: str | bytes | None = None,
        inorder: bool = False,
        mode: _RegisterMode = "async",
        onRegistered: _OnRegistered | None = None,
    ) -> str:
        """Hook the Redis command `hook` (only for keys starting with
        `keyprefix` when given): the flow runs instead of the command and
        its result is the reply; call_next() runs the original."""

    @overload
    def register(
        self: GearsBuilder[str],
        prefix: Any = "*",
        convertToStr: bool = True,
        collect: bool = True,
        **kwargs: Any,
    ) -> str:
        """Register the flow as an event handler. All readers take mode
        ('sync', 'async', 'async_local') and onRegistered. KeysReader:
        eventTypes, keyTypes, readValue, commands. StreamReader: batch,
        duration, onFailedPolicy, onFailedRetryInterval, trimStream.
        CommandReader: trigger, or hook with keyprefix; inorder.
        KeysOnlyReader, PythonReader and ShardsIDReader can't register."""

GB = GearsBuilder

# Redis commands.

def execute(command: str, *args: object) -> Any:
    """Run a Redis command as the calling user and return its reply. An
    error reply raises GearsError; non-bytes arguments go through str()."""

class atomic:
    """`with atomic():` holds the Redis lock for the whole block, so other
    clients never see it half done. Don't await inside it."""

    def __init__(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc_info: object) -> Literal[False]:
        """Release the lock; exceptions propagate. Callable with no
        arguments, as 1.2 clients do."""

def isInAtomicBlock() -> bool:
    """Whether the calling code runs inside an atomic block."""

def call_next(*args: object) -> Any:
    """Inside a command hook: run the next hook, or the original command,
    with `args`, and return its reply."""

def override_reply(value: Any) -> None:
    """Set the reply of the client whose command triggered the execution
    (KeysReader with `commands=`), once. A text starting with '-' is sent
    as an error, '+' as a status."""

def flat_error(msg: str) -> NoReturn:
    """Fail with `msg` as the whole error text, no traceback attached."""

# Configuration, shard information, logging.

def configGet(key: str) -> _ConfigValue | None:
    """The value of a gears configuration key, or None."""

@overload
def gearsConfigGet(key: str) -> _ConfigValue | None:
    """The value of a gears configuration key, or None."""

@overload
def gearsConfigGet(key: str, default: _T) -> _ConfigValue | _T:
    """The value of a gears configuration key, or `default`."""

def hashtag() -> str:
    """A hashtag whose slot this shard owns, to build local key names."""

def log(message: object, level: _LogLevel = "notice") -> None:
    """Write str(message) to the Redis log."""

@deprecated("use log")
def Log(message: object, level: _LogLevel = "notice") -> None:
    """Deprecated spelling of `log` (also logs a warning)."""

@deprecated("use configGet")
def ConfigGet(key: str) -> _ConfigValue | None:
    """Deprecated spelling of `configGet` (also logs a warning)."""

@overload
@deprecated("use gearsConfigGet")
def GearsConfigGet(key: str) -> _ConfigValue | None:
    """Deprecated spelling of `gearsConfigGet` (also logs a warning)."""

@overload
@deprecated("use gearsConfigGet")
def GearsConfigGet(key: str, default: _T) -> _ConfigValue | _T: ...

# Coroutines and futures. A step may be an `async def`; it may also return
# a gearsFuture() it created and complete it later.

def createFuture() -> asyncio.Future[Any]:
    """A future on the gears event loop, for a coroutine to await; complete
    it from anywhere with setFutureResults / setFutureException."""

def setFutureResults(f: _Future, res: Any) -> None:
    """Complete `f` (from createFuture, or a gearsFuture) with `res`."""

def setFutureException(f: _Future, ex: BaseException | type[BaseException] | str) -> None:
    """Fail `f` with `ex`; a plain text becomes a GearsError."""

def runCoroutine(
    cr: Coroutine[Any, Any, Any],
    f: _Future | None = None,
    delay: float | None = 0,
) -> None:
    """Run `cr` on the gears event loop after `delay` seconds, as the
    calling user; if `f` is given it receives the outcome."""

def isAsyncAllow() -> bool:
    """Whether the current execution may wait (False under MULTI/EXEC or
    Lua, where a step must answer at once)."""

# Names the runtime defines but does not implement yet: each raises
# GearsError("<name> is not implemented yet") when called.

def get_command(*args: Any, **kwargs: Any) -> NoReturn:
    """Not implemented yet in this runtime (always raises GearsError)."""

def registerTE(*args: Any, **kwargs: Any) -> NoReturn:
    """Not implemented yet in this runtime (always raises GearsError)."""

def getGearsSession(*args: Any, **kwargs: Any) -> NoReturn:
    """Not implemented yet in this runtime (always raises GearsError)."""

def setGearsSession(*args: Any, **kwargs: Any) -> NoReturn:
    """Not implemented yet in this runtime (always raises GearsError)."""

def registerGearsThread(*args: Any, **kwargs: Any) -> NoReturn:
    """Not implemented yet in this runtime (always raises GearsError)."""
