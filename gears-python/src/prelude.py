# The Python side of the gears runtime: GearsBuilder and the helpers every
# RG.PYEXECUTE script sees as globals. Native pieces come from `redisgears`,
# a module the Rust runtime builds before this file runs.
#
# Each operation appends primitive steps `(kind, callback_name, function,
# extra)` to the builder; `run()` hands them to the native runner, which
# turns them into a gears-core plan. The composite operations (aggregate,
# count, sort...) are written here in terms of the primitive ones, with the
# same step layout RedisGears 1.2 shows in RG.GETEXECUTION.

import asyncio as _asyncio
import contextvars as _contextvars
import copy as _copy
import cProfile as _cProfile
import io as _io
import pstats as _pstats
import sys as _sys
import threading as _threading
import types as _types

try:
    # Loaded now, before REQUIREMENTS put their directory first on sys.path:
    # registrations are always saved and restored with this cloudpickle,
    # whatever version a requirement brings along.
    import cloudpickle as _cloudpickle
except ImportError:
    _cloudpickle = None
import redisgears
import redisgears as _native
from redisgears import (
    GearsError,
    ForceStoppedError,
    GearsFlatError,
    execute,
    log as _native_log,
    hashtag,
    configGet,
    isInAtomicBlock,
    call_next,
    override_reply,
    gearsFuture,
    createFuture,
    setFutureResults,
    setFutureException,
    runCoroutine,
    isAsyncAllow,
)


# ---------------------------------------------------------------------------
# Logging, configuration, atomic() and the names 1.2 scripts use.

_PY_READERS = ('ShardsIDReader', 'KeysOnlyReader')
_READERS = ('KeysReader', 'KeysOnlyReader', 'StreamReader', 'PythonReader',
            'ShardsIDReader', 'CommandReader')

_LOG_LEVELS = ('debug', 'verbose', 'notice', 'warning')


def log(message, level='notice'):
    if level not in _LOG_LEVELS:
        raise GearsError("unknown log level '%s', expected one of debug, verbose, notice, warning" % (level,))
    _native_log(str(message), level)


def Log(message, level='notice'):
    _native_log('Log is deprecated, use log instead', 'warning')
    log(message, level)


def gearsConfigGet(key, default=None):
    value = configGet(key)
    return default if value is None else value


def ConfigGet(key):
    _native_log('ConfigGet is deprecated, use configGet instead', 'warning')
    return configGet(key)


def GearsConfigGet(key, default=None):
    _native_log('GearsConfigGet is deprecated, use gearsConfigGet instead', 'warning')
    return gearsConfigGet(key, default)


def flat_error(msg):
    raise GearsFlatError(msg)


def _not_yet(name):
    def stub(*args, **kwargs):
        raise GearsError('%s is not implemented yet' % name)
    stub.__name__ = name
    return stub


class atomic(object):
    '''`with atomic():` holds the Redis lock for the whole block, so no other
    client sees the block half done.'''

    def __enter__(self):
        _native.atomic_enter()
        return self

    def __exit__(self, *exc_info):
        # 1.2 clients (gearsclient) call __exit__() without arguments.
        _native.atomic_exit()
        return False


get_command = _not_yet('get_command')
registerTE = _not_yet('registerTE')

# The names 1.2 scripts and client libraries (gearsclient, rgsync, redgrease)
# take from the `redisgears` module itself.
redisgears.executeCommand = execute
redisgears.getMyHashTag = hashtag
redisgears.config_get = configGet
redisgears.atomicCtx = atomic
redisgears.gearsFutureCtx = gearsFuture
redisgears.callNext = call_next
redisgears.flatError = flat_error
redisgears.overrideReply = override_reply
getGearsSession = _not_yet('getGearsSession')
setGearsSession = _not_yet('setGearsSession')
registerGearsThread = _not_yet('registerGearsThread')


# ---------------------------------------------------------------------------
# GearsBuilder.


def _argc(op, args, n):
    if len(args) != n:
        raise GearsError('wrong number of args to %s function' % op)


def _func(op, f):
    if not callable(f):
        raise GearsError('%s argument must be a function' % op)


def _shards_id_reader():
    known = _native.shard_id()
    if known is not None:
        yield known
        return
    res = execute('RG.INFOCLUSTER')
    if res == 'no cluster mode':
        yield '1'
    else:
        yield res[1]


def _keys_only_reader(pattern='*', count=1000, noScan=False, patternGenerator=None):
    if patternGenerator is not None:
        pattern, noScan = patternGenerator()

    def gen():
        if noScan:
            if execute('EXISTS', pattern) == 1:
                yield pattern
            return
        cursor = '0'
        while True:
            cursor, keys = execute('SCAN', cursor, 'MATCH', pattern, 'COUNT', str(count))
            for k in keys:
                yield k
            if cursor == '0':
                break
    return gen


class GearsBuilder(object):
    def __init__(self, reader='KeysReader', defaultArg='*', desc=None):
        if not isinstance(reader, str):
            raise GearsError('reader argument must be a string')
        if reader not in _READERS:
            raise GearsError('The given reader does not exists')
        self.reader = reader
        self.defaultArg = defaultArg
        self.desc = desc
        self.steps = [('map', 'RedisGearsPy_ToPyRecordMapper', None, None)]

    def _step(self, kind, name, f=None, extra=None):
        self.steps.append((kind, name, f, extra))
        return self

    # Primitive operations.

    def _one_callback(self, op, args, kind, name):
        _argc(op, args, 1)
        _func(op, args[0])
        return self._step(kind, name, args[0])

    def map(self, *args):
        return self._one_callback('map', args, 'map', 'RedisGearsPy_PyCallbackMapper')

    def filter(self, *args):
        return self._one_callback('filter', args, 'filter', 'RedisGearsPy_PyCallbackFilter')

    def foreach(self, *args):
        return self._one_callback('foreach', args, 'foreach', 'RedisGearsPy_PyCallbackForEach')

    def flatmap(self, *args):
        self._one_callback('flatmap', args, 'map', 'RedisGearsPy_PyCallbackFlatMapper')
        return self._step('flatmap', 'flatmap')

    def accumulate(self, *args):
        return self._one_callback('accumulate', args, 'accumulate', 'RedisGearsPy_PyCallbackAccumulate')

    def _grouping(self, op, args):
        _argc(op, args, 2)
        extractor, reducer = args
        if not callable(extractor) or not callable(reducer):
            raise GearsError('groupby extractor|reducer argument must be a function')
        return extractor, reducer

    def _groupby(self, op, args, repartition):
        extractor, reducer = self._grouping(op, args)
        self._step('extractkey', 'RedisGearsPy_PyCallbackExtractor', extractor)
        if repartition:
            self._step('repartition', 'repartition')
        self._step('accumulatebykey', 'RedisGearsPy_PyCallbackAccumulateByKey', reducer)
        return self._step('map', 'RedisGearsPy_ToPyRecordMapper')

    def localgroupby(self, *args):
        return self._groupby('localgroupby', args, repartition=False)

    def groupby(self, *args):
        return self._groupby('groupby', args, repartition=True)

    def batchgroupby(self, *args):
        _argc('batchgroupby', args, 2)
        extractor, reducer = args
        if not callable(extractor):
            raise GearsError('batchgroupby extractor argument must be a function')
        if not callable(reducer):
            raise GearsError('batchgroupby reducer argument must be a function')
        self._step('extractkey', 'RedisGearsPy_PyCallbackExtractor', extractor)
        self._step('repartition', 'repartition')
        self._step('group', 'group')
        self._step('reduce', 'RedisGearsPy_PyCallbackReducer', reducer)
        return self._step('map', 'RedisGearsPy_ToPyRecordMapper')

    def limit(self, *args):
        if len(args) not in (1, 2):
            raise GearsError('wrong number of args to limit function')
        length = args[0]
        offset = args[1] if len(args) == 2 else 0
        for n in (length, offset):
            if isinstance(n, bool) or not isinstance(n, int):
                raise GearsError('limit argument must be a number')
            if n < 0:
                raise GearsError('limit argument must be a non negative number')
        return self._step('limit', 'limit', None, (offset, length))

    def collect(self, *args):
        _argc('collect', args, 0)
        return self._step('collect', 'collect')

    def repartition(self, *args):
        _argc('repartition', args, 1)
        _func('repartition', args[0])
        self._step('extractkey', 'RedisGearsPy_PyCallbackExtractor', args[0])
        self._step('repartition', 'repartition')
        return self._step('map', 'GetValueMapper')

    # Composite operations, built from the primitive ones.

    def aggregate(self, zero, seqOp, combOp):
        _func('aggregate', seqOp)
        _func('aggregate', combOp)
        self.accumulate(lambda a, r: seqOp(a if a else _copy.deepcopy(zero), r))
        self.collect()
        return self.accumulate(lambda a, r: combOp(a if a else _copy.deepcopy(zero), r))

    def __localAggregateby__(self, extractor, zero, aggregator):
        # 1.2's name, which some scripts call directly.
        return self._localAggregateby(extractor, zero, aggregator)

    def _localAggregateby(self, extractor, zero, aggregator):
        return self.localgroupby(
            extractor, lambda k, a, r: aggregator(k, a if a else _copy.deepcopy(zero), r))

    def aggregateby(self, extractor, zero, seqOp, combOp):
        self._localAggregateby(extractor, zero, seqOp)
        return self.groupby(
            lambda r: r['key'],
            lambda k, a, r: combOp(k, a if a else _copy.deepcopy(zero), r['value']))

    def count(self):
        self.accumulate(lambda a, r: 1 + (a if a else 0))
        self.collect()
        return self.accumulate(lambda a, r: r + (a if a else 0))

    def countby(self, extractor=lambda x: x):
        return self.aggregateby(extractor, 0, lambda k, a, r: 1 + a, lambda k, a, r: r + a)

    def sort(self, reverse=True):
        self.aggregate([], lambda a, r: a + [r], lambda a, r: a + r)
        self.map(lambda r: sorted(r, reverse=reverse))
        return self.flatmap(lambda r: r)

    def distinct(self):
        self.aggregate(set(), lambda a, r: a | set([r]), lambda a, r: a | r)
        return self.flatmap(lambda x: list(x))

    def avg(self, extractor=lambda x: float(x)):
        self.map(extractor)
        self.aggregate((0, 0),
                       lambda a, r: (a[0] + r, a[1] + 1),
                       lambda a, r: (a[0] + r[0], a[1] + r[1]))
        return self.map(lambda x: x[0] / x[1])

    # Actions.

    def run(self, arg=None, convertToStr=True, collect=True, **kwargs):
        if convertToStr:
            self.map(_to_str_mapper(lambda x: str(x)))
        if collect:
            self.collect()
        reader = self.reader
        if arg is None:
            arg = self.defaultArg
        if reader == 'ShardsIDReader':
            reader, arg = 'PythonReader', _shards_id_reader
        elif reader == 'KeysOnlyReader':
            options = {}
            if 'pattern' in kwargs:
                options['pattern'] = kwargs.pop('pattern')
            elif arg is not None:
                options['pattern'] = arg
            for name in ('count', 'noScan', 'patternGenerator'):
                if name in kwargs:
                    options[name] = kwargs.pop(name)
            reader, arg = 'PythonReader', _keys_only_reader(**options)
        return _native.run(reader, arg, self.steps, self.desc, kwargs)

    def register(self, prefix='*', convertToStr=True, collect=True, **kwargs):
        if 'regex' in kwargs:
            # 1.2's deprecated name for prefix.
            prefix = kwargs.pop('regex')
        if convertToStr:
            self.map(_to_str_mapper(lambda x: str(x)))
        if collect:
            self.collect()
        if self.reader in _PY_READERS:
            raise GearsError('given reader does not exists or does not support register')
        return _native.register(self.reader, prefix, self.steps, self.desc, kwargs)


GB = GearsBuilder


def _to_str_mapper(f):
    # convertToStr's map: the runtime renders it natively (lazily when it
    # can), with the same text; RG.GETEXECUTION still shows the lambda.
    f._gears_to_str = True
    return f


# ---------------------------------------------------------------------------
# Restored registrations (RDB, AOF, replication) of one session share one
# globals dict, as their functions did in the script that registered them:
# each registration was saved on its own, with its own copy of the globals
# its functions use.
_SESSION_GLOBALS = {}


def _restore_callbacks(session, steps, on_registered):
    types = _types
    shared = _SESSION_GLOBALS.setdefault(session, {})
    shared['__gears_session__'] = session
    funcs = [s[2] for s in steps] + [on_registered]
    originals = {}
    for f in funcs:
        if isinstance(f, types.FunctionType):
            originals[id(f.__globals__)] = f.__globals__
    # The newest saved values win (an upgraded session's new functions).
    for d in originals.values():
        shared.update(d)
    memo = {}

    def rebind(f):
        if not isinstance(f, types.FunctionType) or id(f.__globals__) not in originals:
            return f
        if id(f) not in memo:
            g = types.FunctionType(f.__code__, shared, f.__name__, f.__defaults__, f.__closure__)
            g.__kwdefaults__ = f.__kwdefaults__
            g.__qualname__ = f.__qualname__
            g.__dict__.update(f.__dict__)
            memo[id(f)] = g
        return memo[id(f)]

    for k in list(shared):
        shared[k] = rebind(shared[k])
    steps = [(s[0], s[1], rebind(s[2]), s[3]) for s in steps]
    return steps, rebind(on_registered)


def _forget_restored_sessions(session=None):
    if session is None:
        _SESSION_GLOBALS.clear()
    else:
        _SESSION_GLOBALS.pop(session, None)


# ---------------------------------------------------------------------------
# The event loop of coroutines, on its own thread. A step's coroutine runs
# its first steps on the step's thread (see the native `aio`), so the loop
# takes calls from any thread: call_soon and timers asked for elsewhere are
# handed to the loop thread.

# Who the coroutine a task or callback belongs to acts as (user, database,
# command). Tasks copy the context they are created in, so the tasks a
# coroutine starts (gather, wait_for, create_task) and the callbacks it
# schedules act as it does.
_ACTING = _contextvars.ContextVar('gears_acting')


def _in_acting(callback, *args):
    acting = _ACTING.get(None)
    if acting is None:
        return callback(*args)
    return acting.run(callback, args)


def _with_acting(acting):
    context = _contextvars.copy_context()
    context.run(_ACTING.set, acting)
    return context


class _ForeignTimer(object):
    # A timer asked for on another thread, armed on the loop thread.
    _source_traceback = None

    def __init__(self, loop):
        self._loop = loop
        self._handle = None
        self._cancelled = False

    def _arm(self, when, callback, args, context):
        if not self._cancelled:
            self._handle = _asyncio.SelectorEventLoop.call_at(
                self._loop, when, _in_acting, callback, *args, context=context)

    def cancel(self):
        self._cancelled = True
        if self._handle is not None:
            self._loop.call_soon_threadsafe(self._handle.cancel)

    def cancelled(self):
        return self._cancelled


class _GatedSelector(object):
    # The loop's selector: the loop thread leaves the asyncio gate (see the
    # native runtime) while it waits for I/O.

    def __init__(self, selector):
        self._selector = selector

    def select(self, timeout=None):
        _native.gate_leave()
        try:
            return self._selector.select(timeout)
        finally:
            _native.gate_enter()

    def __getattr__(self, name):
        return getattr(self._selector, name)


class _GearsLoop(_asyncio.SelectorEventLoop):
    _gears_thread = None

    def _run_once(self):
        _native.gate_enter()
        try:
            super()._run_once()
        finally:
            _native.gate_leave()

    def _on_loop_thread(self):
        return _threading.get_ident() == self._gears_thread

    def _foreign_context(self, context):
        # Scheduled from another thread (a coroutine's first steps, a step):
        # the callback, or the task, acts as that thread does.
        if context is None:
            return _with_acting(_native.current_acting())
        if context.get(_ACTING) is None:
            context.run(_ACTING.set, _native.current_acting())
        return context

    def call_soon(self, callback, *args, context=None):
        if self._on_loop_thread():
            return super().call_soon(callback, *args, context=context)
        return self.call_soon_threadsafe(callback, *args, context=self._foreign_context(context))

    def _call_soon(self, callback, args, context):
        return super()._call_soon(_in_acting, (callback,) + tuple(args), context)

    def call_at(self, when, callback, *args, context=None):
        if self._on_loop_thread():
            return super().call_at(when, _in_acting, callback, *args, context=context)
        timer = _ForeignTimer(self)
        self.call_soon_threadsafe(timer._arm, when, callback, args, self._foreign_context(context))
        return timer


def _new_loop():
    loop = _GearsLoop()
    loop._selector = _GatedSelector(loop._selector)
    return loop


def _spawn_loop(loop):
    # Runs `loop` on its own thread, once the native runtime is in place.
    ready = _threading.Event()

    def main():
        loop._gears_thread = _threading.get_ident()
        _asyncio.set_event_loop(loop)
        ready.set()
        while True:
            # Callbacks' exceptions go to the loop's handler; what escapes
            # it (SystemExit...) must not end the thread every coroutine
            # needs.
            try:
                loop.run_forever()
            except BaseException as e:
                _native_log('the event loop stopped on %r; restarting it' % (e,), 'warning')

    _threading.Thread(target=main, name='gears-loop', daemon=True).start()
    ready.wait()


# ---------------------------------------------------------------------------
# A thread started by user code acts as the code that started it (same
# user, same database); a thread of nobody's could do anything. `start()`
# wraps the thread's `run` (an instance attribute wins over the class's,
# subclasses' own `run` included) to act as the starter: only public
# API, no CPython internals.
_thread_start = _threading.Thread.start


def _start_acting_as_starter(self):
    acting = _native.current_acting()
    run = self.run

    def run_acting():
        return acting.run(run, ())

    self.run = run_acting
    return _thread_start(self)


_threading.Thread.start = _start_acting_as_starter


# ---------------------------------------------------------------------------
# Coroutines: driven on the step's thread until they wait, then on the loop.

# Tasks the loop runs; asyncio itself keeps only weak references to them.
_TASKS = set()
_FRESH = object()


def _start_task(acting, coro):
    # Runs `coro` as a task of the loop (we are on its thread) in `acting`,
    # kept until it ends.
    task = _asyncio.get_running_loop().create_task(coro, context=_with_acting(acting))
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
    return task


@_types.coroutine
def _driven(acting, coro, yielded=_FRESH):
    # Drives `coro` inside `acting`, from the value it last yielded (its
    # first steps ran on its step's thread) or from its start.
    if yielded is _FRESH:
        done, yielded = acting.send(coro, None)
        if done:
            return yielded
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as e:
            done, yielded = acting.throw(coro, e)
        else:
            done, yielded = acting.send(coro, sent)
        if done:
            return yielded


def _continue_on_loop(acting, coro, first, answerer):
    async def finish():
        try:
            value = await _driven(acting, coro, first)
        except BaseException as e:
            answerer.fail(e)
        else:
            answerer.ok(value)
    answerer.cancel_with(_start_task(acting, finish()))


def _settle_future(f, ok, value):
    if hasattr(f, 'continueRun'):
        # A gearsFuture (runCoroutine's f, as in 1.2).
        try:
            if ok:
                f.continueRun(value)
            else:
                f.continueFailed(value)
        except GearsError as e:
            log('could not continue a gearsFuture: %s' % e, level='warning')
        return
    if f.done():
        return
    if ok:
        f.set_result(value)
        return
    if not (isinstance(value, BaseException)
            or (isinstance(value, type) and issubclass(value, BaseException))):
        value = GearsError(str(value))
    f.set_exception(value)


def _run_coroutine(acting, coro, f, delay):
    async def run():
        if delay > 0:
            await _asyncio.sleep(delay)
        try:
            value = await _driven(acting, coro)
        except BaseException as e:
            if f is not None:
                _settle_future(f, False, e)
        else:
            if f is not None:
                _settle_future(f, True, value)
    _start_task(acting, run())


# ---------------------------------------------------------------------------
# ProfileExecutions: one cProfile profiler per session, found through the
# globals of the function being called (scripts' globals name their session).
_PROFILERS = {}


def _profiler_of(f):
    g = getattr(f, '__globals__', None)
    session = g.get('__gears_session__') if isinstance(g, dict) else None
    if session is None:
        return None
    p = _PROFILERS.get(session)
    if p is None:
        p = _PROFILERS[session] = _cProfile.Profile()
    return p


def _profile_stats(session):
    # As 1.2: sorted by tottime, then callers and callees. A profiler that
    # never ran makes pstats raise.
    out = _io.StringIO()
    stats = _pstats.Stats(_PROFILERS.get(session) or _cProfile.Profile(), stream=out)
    stats.sort_stats('tottime')
    stats.print_stats()
    stats.print_callers()
    stats.print_callees()
    return out.getvalue()


def _profile_reset(session):
    _PROFILERS.pop(session, None)


# ---------------------------------------------------------------------------
# Libraries written for 1.2 (redgrease) import the runtime's globals from
# `__main__`, where 1.2 defined them.
def _publish_in_main():
    main = _sys.modules.get('__main__')
    if main is not None:
        for name, value in list(globals().items()):
            if not name.startswith('_'):
                setattr(main, name, value)


_publish_in_main()
