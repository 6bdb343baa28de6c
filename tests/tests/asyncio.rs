//! Coroutines and futures in steps: records that wait without holding a
//! worker, in input order, with 1.2's rules and errors.

use gears_tests::{bulk, Client, Server, Value};
use std::time::{Duration, Instant};

fn ok() -> Value {
    Value::Status("OK".into())
}

fn texts(v: &Value) -> Vec<String> {
    v.array().iter().map(Value::text).collect()
}

/// Waits until an execution is running on `s` (on a worker, or waiting
/// for its coroutines).
fn wait_running(s: &Server, c: &mut Client) {
    assert!(
        s.wait_for(20, || {
            c.executions().iter().any(|(_, status)| status == "running")
        }),
        "no execution started: {:?}",
        c.executions()
    );
}

/// Waits until the execution just started has come to its first wait. On a
/// server with one worker thread, a plain run queued after it answers only
/// once that execution gave the worker back, which it does when it parks.
fn wait_parked(s: &Server, c: &mut Client) {
    wait_running(s, c);
    assert_eq!(c.py("GB('ShardsIDReader').run()").results(), ["1"]);
}

/// The error of `RG.TRIGGER`/`RG.PYEXECUTE` replies and error records
/// carries the Python traceback; this checks the message is in it.
fn assert_has(text: &str, wanted: &str) {
    assert!(text.contains(wanted), "{wanted:?} not in {text:?}");
}

#[test]
fn coroutine_steps_keep_the_input_order() {
    let s = Server::start(&[]);
    let mut c = s.client();
    // The first records wait longest: results still come in input order.
    let r = c.py("import asyncio\n\
         async def slow(x):\n    await asyncio.sleep((10 - x) * 0.01)\n    return x * 10\n\
         GB('PythonReader').map(slow).run(lambda: iter(range(10)))");
    assert_eq!(
        r.results(),
        (0..10).map(|x| (x * 10).to_string()).collect::<Vec<_>>()
    );
    assert!(r.errors().is_empty());
    // filter, foreach, flatmap, aggregate and aggregateby take coroutines.
    let r = c.py(
        "import asyncio\n\
         async def even(x):\n    await asyncio.sleep(0.001 * (x % 3))\n    return x % 2 == 0\n\
         async def touch(x):\n    await asyncio.sleep(0)\n    execute('incr', 'touched')\n\
         async def twice(x):\n    await asyncio.sleep(0)\n    return [x, x]\n\
         GB('PythonReader').filter(even).foreach(touch).flatmap(twice).run(lambda: iter(range(6)))",
    );
    assert_eq!(r.results(), ["0", "0", "2", "2", "4", "4"]);
    assert_eq!(c.cmd(&["GET", "touched"]), bulk("3"));
    let r = c.py("import asyncio\n\
         async def add(a, x):\n    await asyncio.sleep(0)\n    return a + x\n\
         GB('PythonReader').aggregate(0, add, add).run(lambda: iter(range(101)))");
    assert_eq!(r.results(), ["5050"]);
    let r = c.py(
        "import asyncio\n\
         async def add(k, a, x):\n    await asyncio.sleep(0)\n    return a + x\n\
         GB('PythonReader').aggregateby(lambda x: str(x % 2), 0, add, add).map(lambda r: '%s=%s' % (r['key'], r['value'])).run(lambda: iter(range(10)))",
    );
    let mut got = r.results();
    got.sort();
    assert_eq!(got, ["0=20", "1=25"]);
    // A coroutine that raises is an error record; one that awaits nothing
    // answers at once.
    let r = c.py("import asyncio\n\
         async def boom(x):\n    await asyncio.sleep(0.01)\n    raise Exception('boom %s' % x)\n\
         GB('ShardsIDReader').map(boom).run()");
    assert_eq!(r.results().len(), 0);
    assert_has(&r.errors()[0], "boom 1");
    let r = c.py("async def now(x):\n    return 'now'\nGB('ShardsIDReader').map(now).run()");
    assert_eq!(r.results(), ["now"]);
    // call_next outside a hook, after an await, still raises 1.2's error.
    let r = c.py(
        "import asyncio\n\
         async def nohook(x):\n    await asyncio.sleep(0)\n    try:\n        call_next('x')\n    except Exception as e:\n        return str(e)\n\
         GB('ShardsIDReader').map(nohook).run()",
    );
    assert_eq!(r.results(), ["Can not get CommandHook ctx"]);
}

#[test]
fn the_intro_example_waits_five_seconds_without_a_worker() {
    let s = Server::start(&["ExecutionThreads", "1"]);
    let mut c = s.client();
    let script = "import asyncio\n\nasync def coro(r):\n\tawait asyncio.sleep(5)\n\nGB('ShardsIDReader').foreach(coro).run()\n";
    let mut waiter = s.client();
    let t = Instant::now();
    waiter.send(&["RG.PYEXECUTE", script]);
    wait_running(&s, &mut c);
    // Meanwhile the only worker runs other executions (queued after the
    // coroutine's, this one runs only if the coroutine let the worker go).
    assert_eq!(c.py("GB('ShardsIDReader').run()").results(), ["1"]);
    assert!(t.elapsed() < Duration::from_secs(4));
    let r = waiter.read();
    assert_eq!(r.results(), ["1"]);
    assert!(t.elapsed() >= Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn waiting_records_wait_together_and_hold_no_worker() {
    // One worker thread: if a waiting record held it, the second execution
    // could not run until the first ended.
    let s = Server::start(&["ExecutionThreads", "1"]);
    let mut c = s.client();
    let t = Instant::now();
    let r = c.py("import asyncio\n\
         async def nap(x):\n    await asyncio.sleep(0.1)\n    return x\n\
         GB('PythonReader').map(nap).count().run(lambda: iter(range(1000)))");
    assert_eq!(r.results(), ["1000"]);
    // 1,000 naps of 0.1 s one after another would take 100 s.
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());

    c.py(
        "import asyncio\n\
         async def wait(x):\n    f = createFuture()\n    runCoroutine(asyncio.sleep(60), f)\n    await f\n\
         GB('CommandReader').map(wait).register(trigger='long', mode='async')",
    );
    let mut waiter = s.client();
    waiter.send(&["RG.TRIGGER", "long"]);
    wait_running(&s, &mut c);
    // The only worker is free: a plain execution (queued after the waiting
    // one) runs meanwhile.
    c.set_timeout(Duration::from_secs(10));
    let r = c.py("GB('ShardsIDReader').run()");
    assert_eq!(r.results(), ["1"]);
}

#[test]
fn gears_future_rules_and_errors() {
    let s = Server::start(&[]);
    let mut c = s.client();
    // Continued from another thread.
    let r = c.py(
        "import threading\n\
         def later(x):\n    f = gearsFuture()\n    threading.Timer(0.05, lambda: f.continueRun(x + '!')).start()\n    return f\n\
         GB('ShardsIDReader').map(later).run()",
    );
    assert_eq!(r.results(), ["1!"]);
    // Failed: the error text is the record's error.
    let r = c.py(
        "import threading\n\
         def later(x):\n    f = gearsFuture()\n    threading.Timer(0.01, lambda: f.continueFailed('went wrong')).start()\n    return f\n\
         GB('ShardsIDReader').map(later).run()",
    );
    assert_eq!(r.errors(), ["went wrong"]);
    // A filter answers with the truth of its value; foreach keeps its record.
    let r = c.py(
        "import threading\n\
         def keep(x):\n    f = gearsFuture()\n    threading.Timer(0.01, lambda: f.continueRun(x % 2)).start()\n    return f\n\
         def each(x):\n    f = gearsFuture()\n    threading.Timer(0.01, lambda: f.continueRun('ignored')).start()\n    return f\n\
         GB('PythonReader').filter(keep).foreach(each).run(lambda: iter(range(5)))",
    );
    assert_eq!(r.results(), ["1", "3"]);
    // Outside a step.
    let err = c.py("gearsFuture()").error();
    assert_has(
        &err,
        "Future object can only be created inside certain execution steps",
    );
    // Twice in one step, continued before returned, continued twice.
    let r = c.py(
        "def twice(x):\n    gearsFuture()\n    try:\n        gearsFuture()\n    except Exception as e:\n        return str(e)\n\
         GB('ShardsIDReader').map(twice).run()",
    );
    assert_eq!(
        r.results(),
        ["Can not create async record twice on the same step"]
    );
    let r = c.py(
        "def early(x):\n    f = gearsFuture()\n    try:\n        f.continueRun(1)\n    except Exception as e:\n        return str(e)\n\
         GB('ShardsIDReader').map(early).run()",
    );
    assert_eq!(
        r.results(),
        ["Can not handle future untill it returned from the callback"]
    );
    let r = c.py(
        "import threading\n\
         seen = []\n\
         def again(x):\n    f = gearsFuture()\n    def go():\n        f.continueRun('first')\n        try:\n            f.continueRun('second')\n        except Exception as e:\n            execute('set', 'twice', str(e))\n    threading.Timer(0.01, go).start()\n    return f\n\
         GB('ShardsIDReader').map(again).run()",
    );
    assert_eq!(r.results(), ["first"]);
    // The second continue runs after the execution ended.
    let twice = bulk("Can not continue with the same future twice");
    assert!(s.wait_for(5, || c.cmd(&["GET", "twice"]) == twice));
    // Dropped without being continued.
    let r = c.py("def dropped(x):\n    return gearsFuture()\n\
         GB('ShardsIDReader').map(dropped).run()");
    assert_eq!(r.errors(), ["Async record did not called continue"]);
    // Created but not returned: the step's own value goes on.
    let r = c.py("def unused(x):\n    gearsFuture()\n    return 'plain'\n\
         GB('ShardsIDReader').map(unused).run()");
    assert_eq!(r.results(), ["plain"]);
}

const PUBSUB: &str = r#"
from threading import Lock

consumers = []
publishers = []

class MyMutex():
    def __init__(self):
        self.mutex = Lock()

    def __enter__(self):
        self.mutex.acquire()
        return self

    def __exit__(self, type, value, traceback):
        self.mutex.release()

    def __getstate__(self):
        return {}

mutex = None

async def publish(r):
    msg = r[1]
    with mutex:
        if len(consumers) > 0:
            consumer = consumers.pop()
            setFutureResults(consumer, msg)
            return '0K'
        f = createFuture()
        publishers.append((f, msg))
    return await f


async def consume(r):
    with mutex:
        if len(publishers) > 0:
            publisher, msg = publishers.pop()
            setFutureResults(publisher, 'OK')
            return msg
        f = createFuture()
        consumers.append(f)
    return await f

def initializeMutex():
    global mutex
    mutex = MyMutex()

GB('CommandReader').map(publish).register(trigger='MSG_PUBLISH')
GB('CommandReader').map(consume).register(trigger='MSG_CONSUME', onRegistered=initializeMutex)
"#;

const PUBSUB_TIMEOUT: &str = r#"
from threading import Lock

consumers = []
publishers = []

class MyMutex():
    def __init__(self):
        self.mutex = Lock()

    def __enter__(self):
        self.mutex.acquire()
        return self

    def __exit__(self, type, value, traceback):
        self.mutex.release()

mutex = None

async def publish(r):
    msg = r[1]
    with mutex:
        if len(consumers) > 0:
            consumer = consumers.pop()
            setFutureResults(consumer, msg)
            return '0K'
        f = createFuture()
        publishers.append((f, msg))
        index = len(publishers) - 1
        async def timeout():
            with mutex:
                if publishers[index][0] == f:
                    future, message = publishers.pop(index)
                    setFutureException(future, 'timedout')
        runCoroutine(timeout(), delay=5)
    return await f


async def consume(r):
    with mutex:
        if len(publishers) > 0:
            publisher, msg = publishers.pop()
            setFutureResults(publisher, 'OK')
            return msg
        f = createFuture()
        consumers.append(f)
    return await f

def initializeMutex():
    global mutex
    mutex = MyMutex()

GB('CommandReader').map(publish).register(trigger='MSG_PUBLISH1')
GB('CommandReader').map(consume).register(trigger='MSG_CONSUME1', onRegistered=initializeMutex)
"#;

#[test]
fn the_publisher_consumer_examples_run_as_written() {
    // One worker thread: what waits is known to wait before the other side
    // comes (see `wait_parked`).
    let s = Server::start(&["ExecutionThreads", "1"]);
    let mut c = s.client();
    assert_eq!(c.py(PUBSUB), ok());
    // A consumer waits for the next message.
    let mut consumer = s.client();
    consumer.send(&["RG.TRIGGER", "MSG_CONSUME"]);
    wait_parked(&s, &mut c);
    assert_eq!(
        texts(&c.cmd(&["RG.TRIGGER", "MSG_PUBLISH", "this is a message"])),
        ["0K"]
    );
    assert_eq!(texts(&consumer.read()), ["this is a message"]);
    // A publisher waits for the next consumer.
    let mut publisher = s.client();
    publisher.send(&["RG.TRIGGER", "MSG_PUBLISH", "second"]);
    wait_parked(&s, &mut c);
    assert_eq!(texts(&c.cmd(&["RG.TRIGGER", "MSG_CONSUME"])), ["second"]);
    assert_eq!(texts(&publisher.read()), ["OK"]);

    // The timeout variant: nobody consumes, the publisher gets an error
    // after five seconds.
    assert_eq!(c.py(PUBSUB_TIMEOUT), ok());
    let t = Instant::now();
    let err = c
        .cmd(&["RG.TRIGGER", "MSG_PUBLISH1", "this is a message"])
        .error();
    assert_has(&err, "timedout");
    assert!(t.elapsed() >= Duration::from_secs(4), "{:?}", t.elapsed());
}

#[test]
fn run_coroutine_resolves_its_future_after_the_delay() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let t = Instant::now();
    let r = c.py(
        "async def value():\n    return execute('incr', 'ran')\n\
         async def fails():\n    raise Exception('bad coroutine')\n\
         async def step(x):\n    f = createFuture()\n    runCoroutine(value(), f, delay=0.3)\n    g = createFuture()\n    runCoroutine(fails(), g)\n    try:\n        await g\n    except Exception as e:\n        return '%s %s' % (await f, e)\n\
         GB('ShardsIDReader').map(step).run()",
    );
    assert_eq!(r.results(), ["1 bad coroutine"]);
    assert!(t.elapsed() >= Duration::from_millis(300));
    // Bad arguments.
    assert_has(
        &c.py("runCoroutine(1)").error(),
        "runCoroutine expects a coroutine",
    );
    assert_has(
        &c.py("async def f():\n    pass\nrunCoroutine(f(), None, -1)")
            .error(),
        "runCoroutine delay must be a non negative number of seconds",
    );
    assert_has(
        &c.py("setFutureResults(1, 2)").error(),
        "expected a future created by createFuture",
    );
}

#[test]
fn the_count_students_examples_run_as_written() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for i in 0..3 {
        c.cmd(&["HSET", &format!("student:{i}"), "name", "x"]);
    }
    // intro.md: an async_local trigger awaiting a run().
    let script = r#"
async def CountStudents(r):
	c = execute('get', 's_count{%s}' % hashtag())
	if c:
		return c
	c = await GB().count().run(prefix='student:*')
	if len(c[1]) > 0:
		# we have an errors.
		return c[1]
	# we have only one result which is the count
	if len(c[0]) == 0:
		c = 0 # zero results
	else:
		c = c[0][0]

	# cache the count for 5 seconds
	execute('set', 's_count{%s}' % hashtag(), c, 'EX', '5')
	return c

GB('CommandReader').map(CountStudents).register(trigger='COUNT_STUDENTS', mode='async_local')
"#;
    assert_eq!(c.py(script), ok());
    assert_eq!(texts(&c.cmd(&["RG.TRIGGER", "COUNT_STUDENTS"])), ["3"]);
    let tag = c
        .cmd(&[
            "RG.PYEXECUTE",
            "GB('ShardsIDReader').map(lambda x: hashtag()).run()",
        ])
        .results()[0]
        .clone();
    assert_eq!(c.cmd(&["GET", &format!("s_count{{{tag}}}")]), bulk("3"));
    // The run() it awaited was dropped once it ended.
    let listed = c.cmd(&["RG.DUMPEXECUTIONS"]).array().len();
    assert!(listed <= 2, "{listed} executions kept");
    // Cached now.
    c.cmd(&["HSET", "student:9", "name", "y"]);
    assert_eq!(texts(&c.cmd(&["RG.TRIGGER", "COUNT_STUDENTS"])), ["3"]);

    // async_await_advance_topics.md: sync, in the background only on a
    // cache miss.
    let script = r#"
async def AsyncCountStudents():
	c = await GB().count().run(prefix='student:*')
	if len(c[1]) > 0:
		# we have an errors.
		return c[1]
	# we have only one result which is the count
	if len(c[0]) == 0:
		c = 0 # zero results
	else:
		c = c[0][0]

	# cache the count for 5 seconds
	execute('set', 's_count{%s}' % hashtag(), c, 'EX', '5')
	return c

def CountStudents(r):
	c = execute('get', 's_count{%s}' % hashtag())
	if c:
		return c
	return AsyncCountStudents()

GB('CommandReader').map(CountStudents).register(trigger='COUNT_STUDENTS1', mode='sync')
"#;
    assert_eq!(c.py(script), ok());
    c.cmd(&["DEL", &format!("s_count{{{tag}}}")]);
    assert_eq!(texts(&c.cmd(&["RG.TRIGGER", "COUNT_STUDENTS1"])), ["4"]);
    // Inside MULTI it may not go to the background: 1.2's error.
    c.cmd(&["DEL", &format!("s_count{{{tag}}}")]);
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "COUNT_STUDENTS1"]),
        Value::Status("QUEUED".into())
    );
    let r = c.cmd(&["EXEC"]);
    assert_has(&r.array()[0].error(), "Creating async record is not allow");
    // A cache hit inside MULTI stays synchronous and works.
    c.cmd(&["SET", &format!("s_count{{{tag}}}"), "7"]);
    c.cmd(&["MULTI"]);
    c.cmd(&["RG.TRIGGER", "COUNT_STUDENTS1"]);
    assert_eq!(
        c.cmd(&["EXEC"]),
        Value::Array(vec![Value::Array(vec![bulk("7")])])
    );
}

#[test]
fn is_async_allow_and_await_inside_atomic() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.py(
        "import asyncio\n\
         def check(x):\n    if not isAsyncAllow():\n        return 'no async here'\n    async def later():\n        await asyncio.sleep(0.01)\n        return 'waited'\n    return later()\n\
         GB('CommandReader').map(check).register(trigger='maybe', mode='sync')",
    );
    assert_eq!(texts(&c.cmd(&["RG.TRIGGER", "maybe"])), ["waited"]);
    c.cmd(&["MULTI"]);
    c.cmd(&["RG.TRIGGER", "maybe"]);
    assert_eq!(
        c.cmd(&["EXEC"]),
        Value::Array(vec![Value::Array(vec![bulk("no async here")])])
    );
    // Lua: the same refusal as MULTI for a coroutine step.
    c.py("import asyncio\n\
         async def wait(x):\n    await asyncio.sleep(0.01)\n    return 'x'\n\
         GB('CommandReader').map(wait).register(trigger='waits', mode='sync')");
    let err = c
        .cmd(&["EVAL", "return redis.call('RG.TRIGGER', 'waits')", "0"])
        .error();
    assert_has(&err, "Creating async record is not allow");
    // The script body is not a step.
    assert_eq!(
        c.py("GB('ShardsIDReader').map(lambda x: str(isAsyncAllow())).run()")
            .results(),
        ["True"]
    );
    // Waiting inside atomic() would hold the Redis lock: refused, and the
    // lock is released.
    let r = c.py(
        "import asyncio\n\
         async def held(x):\n    with atomic():\n        execute('set', 'inside', '1')\n        await asyncio.sleep(0.01)\n    return 'never'\n\
         GB('ShardsIDReader').map(held).run()",
    );
    assert_has(&r.errors()[0], "await is not allow inside atomic block");
    assert_eq!(c.cmd(&["GET", "inside"]), bulk("1"));
    assert_eq!(c.cmd(&["PING"]), Value::Status("PONG".into()));
}

#[test]
fn extractors_and_reducers_refuse_coroutines() {
    let s = Server::start(&[]);
    let mut c = s.client();
    // onRegistered neither: the registration stands, the refusal is logged.
    c.py("async def init():\n    execute('set', 'init-ran', '1')\n\
         GB('CommandReader').register(trigger='t', onRegistered=init)");
    assert!(s.log().contains("onRegistered can not be a coroutine"));
    assert_eq!(c.cmd(&["EXISTS", "init-ran"]), Value::Int(0));
    let r = c.py("async def key(x):\n    return x\n\
         GB('ShardsIDReader').groupby(key, lambda k, a, r: r).run()");
    assert_has(&r.errors()[0], "coroutine are not allow on extractor");
    let r = c.py("async def red(k, l):\n    return l\n\
         GB('ShardsIDReader').batchgroupby(lambda x: x, red).run()");
    assert_has(&r.errors()[0], "coroutine are not allow on reduce");
}

#[test]
fn hooks_and_key_miss_functions_may_be_coroutines() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.py(
        "import asyncio\n\
         async def h(x):\n    await asyncio.sleep(0.01)\n    execute('incr', 'hooked')\n    return call_next(*x[1:])\n\
         GB('CommandReader').map(h).register(hook='set', mode='sync')",
    );
    assert_eq!(c.cmd(&["SET", "k", "v"]), bulk("OK"));
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v"));
    assert_eq!(c.cmd(&["GET", "hooked"]), bulk("1"));
    // Inside MULTI the hook may not wait: the command fails.
    c.cmd(&["MULTI"]);
    c.cmd(&["SET", "k", "w"]);
    let r = c.cmd(&["EXEC"]);
    assert_has(&r.array()[0].error(), "Creating async record is not allow");
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v"));
    // A key-miss function fetches the value after waiting and overrides
    // the reply of the GET that missed.
    c.py(
        "import asyncio\n\
         async def fetch(r):\n    await asyncio.sleep(0.01)\n    execute('set', r['key'], 'fetched')\n    override_reply('fetched')\n\
         GB().foreach(fetch).register(prefix='miss:*', commands=['get'], eventTypes=['keymiss'], mode='async_local')",
    );
    assert_eq!(c.cmd(&["GET", "miss:1"]), bulk("fetched"));
    assert_eq!(c.cmd(&["GET", "miss:1"]), bulk("fetched"));
}

#[test]
fn coroutines_act_in_the_callers_database_and_as_its_user() {
    let s = Server::start(&[]);
    let mut admin = s.client();
    admin.cmd(&[
        "ACL", "SETUSER", "limited", "on", "nopass", "~mine:*", "+@all",
    ]);
    let mut c = s.client();
    c.cmd(&["AUTH", "limited", "x"]);
    c.cmd(&["SELECT", "3"]);
    let r = c.py(
        "import asyncio\n\
         async def w(x):\n    await asyncio.sleep(0.01)\n    execute('set', 'mine:a', 'db3')\n    try:\n        execute('set', 'other', 'x')\n    except Exception as e:\n        return str(e)\n    return 'not refused'\n\
         GB('ShardsIDReader').map(w).run()",
    );
    assert_has(&r.results()[0], "NOPERM");
    admin.cmd(&["SELECT", "3"]);
    assert_eq!(admin.cmd(&["GET", "mine:a"]), bulk("db3"));
    assert_eq!(admin.cmd(&["EXISTS", "other"]), Value::Int(0));
    admin.cmd(&["SELECT", "0"]);
    assert_eq!(admin.cmd(&["EXISTS", "mine:a"]), Value::Int(0));
    // The tasks and callbacks a coroutine starts act for the same user, in
    // the same database: before its first wait (on the step's thread) and
    // after it (on the loop).
    let r = c.py(
        "import asyncio\n\
         async def child(key):\n    try:\n        execute('set', key, 'child')\n        return 'written'\n    except Exception as e:\n        return str(e)[:6]\n\
         def later(key):\n    try:\n        execute('set', key, 'callback')\n    except Exception as e:\n        execute('set', 'mine:callback-error', str(e)[:6])\n\
         async def w(x):\n    first = await asyncio.gather(child('mine:b'), child('other'))\n    await asyncio.sleep(0.01)\n    second = await asyncio.gather(child('mine:c'), asyncio.wait_for(child('other2'), 1))\n    asyncio.get_running_loop().call_soon(later, 'other3')\n    await asyncio.sleep(0.05)\n    return ' '.join(first + second)\n\
         GB('ShardsIDReader').map(w).run()",
    );
    assert_eq!(r.results(), ["written NOPERM written NOPERM"]);
    admin.cmd(&["SELECT", "3"]);
    assert_eq!(admin.cmd(&["GET", "mine:b"]), bulk("child"));
    assert_eq!(admin.cmd(&["GET", "mine:c"]), bulk("child"));
    assert_eq!(admin.cmd(&["GET", "mine:callback-error"]), bulk("NOPERM"));
    for key in ["other", "other2", "other3"] {
        for db in ["0", "3"] {
            admin.cmd(&["SELECT", db]);
            assert_eq!(admin.cmd(&["EXISTS", key]), Value::Int(0), "{key} in {db}");
        }
    }
}

#[test]
fn a_coroutine_does_not_trigger_its_own_registration() {
    let s = Server::start(&[]);
    let mut c = s.client();
    // Its EXPIRE raises an event on the key it was fired for: after the
    // await as before it, that must not fire it again (forever).
    c.py("import asyncio\n\
         async def f(r):\n    await asyncio.sleep(0.01)\n    execute('expire', r['key'], 100)\n\
         GB().foreach(f).register(prefix='self:*', mode='sync')");
    c.cmd(&["SET", "self:1", "v"]);
    // Events fire while the write that raises them runs: a firing by its
    // EXPIRE is counted before the execution ends (and keeps one running).
    assert!(
        s.wait_for(10, || {
            let reg = &c.registrations()[0];
            reg.count("numTriggered") >= 1 && reg.settled()
        }),
        "{:?}",
        c.registrations()
    );
    let reg = &c.registrations()[0];
    assert_eq!(reg.count("numTriggered"), 1, "{reg:?}");
    assert_eq!(reg.count("numSuccess"), 1, "{reg:?}");
    assert!(c.cmd(&["TTL", "self:1"]).int() > 0);
}

#[test]
fn events_inside_multi_and_lua_can_not_wait() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.py(
        "import asyncio\n\
         async def f(r):\n    await asyncio.sleep(0.01)\n    execute('set', 'after:' + r['key'], '1')\n\
         GB().foreach(f).register(prefix='ev:*', mode='sync')",
    );
    c.cmd(&["MULTI"]);
    c.cmd(&["SET", "ev:1", "v"]);
    c.cmd(&["EXEC"]);
    c.cmd(&["EVAL", "redis.call('SET', 'ev:2', 'v')", "0"]);
    // Both executions have ended: whatever they were to write is written.
    assert!(
        s.wait_for(10, || {
            let reg = &c.registrations()[0];
            reg.count("numTriggered") >= 2 && reg.settled()
        }),
        "{:?}",
        c.registrations()
    );
    assert_eq!(
        c.cmd(&["EXISTS", "after:ev:1", "after:ev:2"]),
        Value::Int(0)
    );
    let reg = &c.registrations()[0];
    assert_eq!(reg.count("numFailures"), 2, "{reg:?}");
    assert_has(
        &reg.field("lastError").text(),
        "Creating async record is not allow",
    );
    // Outside them it goes on in the background.
    c.cmd(&["SET", "ev:3", "v"]);
    assert!(s.wait_for(5, || c.cmd(&["EXISTS", "after:ev:3"]) == Value::Int(1)));
}

#[test]
fn asyncio_primitives_shared_by_many_records_lose_no_wakeup() {
    let s = Server::start(&[]);
    let mut c = s.client();
    // Records hand values to each other through one asyncio.Queue and one
    // Lock: their first steps run on the execution's thread, the rest on
    // the loop; a lost wakeup would leave a record waiting forever.
    c.set_timeout(Duration::from_secs(30));
    let r = c.py(
        "import asyncio\n\
         q = None\n\
         lock = None\n\
         async def hand(x):\n    global q, lock\n    if q is None:\n        q = asyncio.Queue()\n        lock = asyncio.Lock()\n    async with lock:\n        await q.put(x)\n    await asyncio.sleep(0)\n    return await q.get()\n\
         GB('PythonReader').map(hand).count().run(lambda: iter(range(3000)))",
    );
    assert_eq!(r.results(), ["3000"]);
    // runCoroutine resolves a gearsFuture too.
    let r = c.py("async def value():\n    return 'from coroutine'\n\
         def step(x):\n    f = gearsFuture()\n    runCoroutine(value(), f)\n    return f\n\
         GB('ShardsIDReader').map(step).run()");
    assert_eq!(r.results(), ["from coroutine"]);
    // The loop may answer before the step has returned the future (here the
    // step sleeps, letting the loop run): the answer waits for the return.
    let r = c.py(
        "import time\nasync def value():\n    return 'early'\n\
         def step(x):\n    f = gearsFuture()\n    runCoroutine(value(), f)\n    time.sleep(0.2)\n    return f\n\
         GB('ShardsIDReader').map(step).run()",
    );
    assert_eq!(r.results(), ["early"], "{r:?}");
}

#[test]
fn aborting_cancels_waiting_coroutines() {
    // One worker thread, for `wait_parked`.
    let s = Server::start(&["ExecutionThreads", "1"]);
    let mut c = s.client();
    c.py(
        "import asyncio\n\
         async def forever(x):\n    try:\n        await createFuture()\n    except asyncio.CancelledError:\n        execute('set', 'cancelled', '1')\n        raise\n\
         GB('CommandReader').map(forever).register(trigger='forever', mode='async')",
    );
    let mut waiter = s.client();
    waiter.send(&["RG.TRIGGER", "forever"]);
    // Abort what waits, not the step while it hands its coroutine to the
    // loop (that abort interrupts the Python code there instead).
    wait_parked(&s, &mut c);
    let (id, _) = c
        .executions()
        .into_iter()
        .find(|(_, status)| status == "running")
        .expect("the parked execution is listed as running");
    assert_eq!(c.cmd(&["RG.ABORTEXECUTION", &id]), ok());
    // The client that waited gets an answer, the coroutine was cancelled.
    let r = waiter.read();
    assert_has(&r.error(), "Execution was aborted");
    assert!(s.wait_for(5, || c.cmd(&["GET", "cancelled"]) == bulk("1")));

    // Unregistering with abortpending ends the waiting ones too.
    waiter.send(&["RG.TRIGGER", "forever"]);
    // abortpending aborts what waits, not a step at work: let it park.
    wait_parked(&s, &mut c);
    let id = c.registrations()[0].id.clone();
    assert_eq!(c.cmd(&["RG.UNREGISTER", &id, "abortpending"]), ok());
    let r = waiter.read();
    assert!(matches!(r, Value::Error(_)), "{r:?}");
}

#[test]
fn what_a_coroutine_writes_after_waiting_reaches_the_replica() {
    let master = Server::start(&[]);
    let replica = Server::replica_of(&master);
    let mut m = master.client();
    m.py(
        "import asyncio\n\
         async def later(r):\n    await asyncio.sleep(0.01)\n    execute('SET', 'copied:' + r['key'], r['value'])\n\
         GB().foreach(later).register(prefix='src:*', mode='sync')",
    );
    let mut r = replica.client();
    assert!(replica.wait_for(10, || r.registrations().len() == 1));
    m.cmd(&["SET", "src:1", "v"]);
    assert!(master.wait_for(5, || m.cmd(&["GET", "copied:src:1"]) == bulk("v")));
    assert!(replica.wait_for(10, || r.cmd(&["GET", "copied:src:1"]) == bulk("v")));
    // The replica fired nothing itself: only the master's executions ran.
    assert_eq!(r.registrations()[0].count("numTriggered"), 0);
}

#[test]
fn a_coroutine_answering_cyclic_or_deep_data_makes_an_error_record() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = c.py(
        "import asyncio\n\
         async def cyclic(x):\n    await asyncio.sleep(0)\n    l = []\n    l.append(l)\n    return l\n\
         GB('ShardsIDReader').map(cyclic).run(convertToStr=False)",
    );
    assert_eq!(r.array()[0], Value::Array(vec![]));
    assert_has(&r.errors()[0], "reply nesting too deep");
    assert_eq!(c.cmd(&["PING"]), Value::Status("PONG".into()));
}

/// A `gearsFuture()` in a step that can not answer later (repartition's
/// extractor, a groupby extractor, a reducer) is 1.2's "Step does not
/// support async", not the error of a future made outside any step.
#[test]
fn a_future_in_a_step_without_async_is_refused_with_1_2s_text() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for script in [
        "GB('ShardsIDReader').repartition(lambda x: gearsFuture()).run()",
        "GB('ShardsIDReader').groupby(lambda x: gearsFuture(), lambda k, a, r: 1).run()",
        "GB('ShardsIDReader').batchgroupby(lambda x: 'k', lambda k, rs: gearsFuture()).run()",
    ] {
        let r = c.py(script);
        let errors = r.errors();
        assert_eq!(errors.len(), 1, "{script}: {r:?}");
        assert_has(&errors[0], "Step does not support async");
    }
    // Outside any step the text stays 1.2's other one.
    let r = c.cmd(&["RG.PYEXECUTE", "gearsFuture()"]);
    assert_has(
        &r.error(),
        "Future object can only be created inside certain execution steps",
    );
}
