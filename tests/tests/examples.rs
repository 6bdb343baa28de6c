//! The registering examples of the 1.2 examples page, run as written.

use gears_tests::{bulk, Server, Value};

#[test]
fn automatic_expiry() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let script = "gb = GB()\ngb.foreach(lambda x: execute('EXPIRE', x['key'], 3600))\ngb.register('*', mode='sync', readValue=False)";
    assert_eq!(c.py(script), Value::Status("OK".into()));
    c.cmd(&["SET", "a", "1"]);
    c.cmd(&["HSET", "h", "f", "v"]);
    // Synchronous: the TTL is there when SET returns. The EXPIRE the
    // function runs does not trigger it again.
    for k in ["a", "h"] {
        let ttl = c.cmd(&["TTL", k]).int();
        assert!((3590..=3600).contains(&ttl), "{k}: {ttl}");
    }
    assert_eq!(c.registrations()[0].count("numTriggered"), 2);
}

#[test]
fn keyspace_notification_processing() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let script = r#"def process(x):
    '''
    Processes a message from the local expiration stream
    '''
    log(f"Key '{x['value']['key']}' expired at {x['id'].split('-')[0]}")

# Capture an expiration event and adds it to the shard's local 'expired' stream
cap = GB('KeysReader')
cap.foreach(lambda x:
            execute('XADD', f'expired:{hashtag()}', '*', 'key', x['key']))
cap.register(prefix='*',
             mode='sync',
             eventTypes=['expired'],
             readValue=False)

# Consume new messages from expiration streams and process them somehow
proc = GB('StreamReader')
proc.foreach(process)
proc.register(prefix='expired:*',
              batch=100,
              duration=1)
"#;
    assert_eq!(c.py(script), Value::Status("OK".into()));
    c.cmd(&["SET", "short", "1", "PX", "20"]);
    assert!(s.wait_for(10, || s.log().contains("Key 'short' expired at")));
    // The stream was consumed and trimmed.
    assert!(s.wait_for(10, || c.cmd(&["XLEN", "expired:06S"]).int() == 0));
}

#[test]
fn reliable_keyspace_notification() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let script = "GearsBuilder() \\\n.foreach(lambda x: execute('XADD', \"notifications-stream\", '*', *sum([[k,v] for k,v in x.items()],[]))) \\\n.register(prefix=\"person:*\", eventTypes=['hset', 'hmset'], mode='sync')";
    assert_eq!(c.py(script), Value::Status("OK".into()));
    c.cmd(&["HSET", "person:1", "name", "ann"]);
    c.cmd(&["HMSET", "person:2", "name", "bob"]);
    c.cmd(&["HSET", "animal:1", "name", "rex"]);
    let entries = c.cmd(&["XRANGE", "notifications-stream", "-", "+"]);
    assert_eq!(entries.array().len(), 2);
    let fields = entries.array()[0].array()[1].texts();
    assert!(fields.contains(&"person:1".to_string()), "{fields:?}");
    assert!(fields.contains(&"hset".to_string()), "{fields:?}");
    // HMSET raises an `hset` event too.
    let fields = entries.array()[1].array()[1].texts();
    assert!(fields.contains(&"person:2".to_string()), "{fields:?}");
}

#[test]
fn delete_by_key_prefix_and_word_count() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for i in 0..5 {
        c.cmd(&["SET", &format!("delete_me:{i}"), "x"]);
    }
    c.cmd(&["SET", "keep", "the quick fox the"]);
    let script = "gb = GearsBuilder()\ngb.map(lambda x: x['key'])               # map the records to key names\ngb.foreach(lambda x: execute('DEL', x))  # delete each key\ngb.count()                               # count the records\ngb.run('delete_me:*')";
    assert_eq!(c.py(script).results(), ["5"]);
    assert_eq!(c.cmd(&["DBSIZE"]), Value::Int(1));
    let script = "gb = GearsBuilder()\ngb.map(lambda x: x['value'])     # map records to \"sentence\" values\ngb.flatmap(lambda x: x.split())  # split sentences to words\ngb.countby()                     # count each word's occurrences\ngb.run()";
    let mut words = c.py(script).results();
    words.sort();
    assert_eq!(
        words,
        [
            "{'key': 'fox', 'value': 1}",
            "{'key': 'quick', 'value': 1}",
            "{'key': 'the', 'value': 2}"
        ]
    );
    assert_eq!(c.cmd(&["GET", "keep"]), bulk("the quick fox the"));
}
