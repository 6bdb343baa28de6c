//! The module in a Redis Cluster: topology, RG.INFOCLUSTER,
//! RG.REFRESHCLUSTER, hashtag() per shard.

use gears_tests::{holds_for, Cluster, Value};

fn info(c: &mut gears_tests::Client) -> (String, Vec<(String, i64, i64, i64)>) {
    let r = c.cmd(&["RG.INFOCLUSTER"]);
    let a = r.array();
    assert_eq!(a[0].text(), "MyId");
    assert_eq!(a[2].text(), "MyRunId");
    let shards = a[4]
        .array()
        .iter()
        .map(|s| {
            let s = s.array();
            assert_eq!(s[0].text(), "id");
            assert_eq!(s[2].text(), "ip");
            assert_eq!(s[10].text(), "minHslot");
            (s[1].text(), s[5].int(), s[11].int(), s[13].int())
        })
        .collect();
    (a[1].text(), shards)
}

#[test]
fn every_node_knows_the_topology_and_its_hashtag() {
    let cluster = Cluster::start(3, &[]);
    let ids = cluster.ids();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut c = node.client();
        assert_eq!(c.cmd(&["RG.REFRESHCLUSTER"]), Value::Status("OK".into()));
        let (me, shards) = info(&mut c);
        assert_eq!(me, ids[i]);
        let want: Vec<(String, i64, i64, i64)> = (0..3)
            .map(|j| {
                let first = (j * 16384 / 3) as i64;
                let last = ((j + 1) * 16384 / 3 - 1) as i64;
                (ids[j].clone(), cluster.nodes[j].port as i64, first, last)
            })
            .collect();
        assert_eq!(shards, want);
        // hashtag() names this shard's lowest slot: a key made with it lands
        // here.
        let r = c.py("execute('SET', '{%s}:mine' % hashtag(), 'here')\nGB('ShardsIDReader').map(lambda x: hashtag()).run()");
        let tag = r.results()[0].clone();
        let key = format!("{{{tag}}}:mine");
        assert_eq!(cluster.node_of(&key).port, node.port);
        let slot = c.cmd(&["CLUSTER", "KEYSLOT", &key]).int();
        assert_eq!(slot, want[i].2);
        assert_eq!(c.cmd(&["GET", &key]).text(), "here");
    }
}

/// Every node's RG.INFOCLUSTER shows every shard's run id soon after the
/// cluster forms (CLUSTER ADDSLOTS + MEET, then RG.REFRESHCLUSTER), with no
/// run: 1.2's tooling polls exactly that before sending work.
#[test]
fn every_node_learns_every_shards_run_id_without_a_run() {
    let cluster = Cluster::start(3, &[]);
    let run_ids: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| {
            let mut c = n.client();
            assert_eq!(c.cmd(&["RG.REFRESHCLUSTER"]), Value::Status("OK".into()));
            c.cmd(&["RG.INFOCLUSTER"]).array()[3].text()
        })
        .collect();
    let ids = cluster.ids();
    for node in &cluster.nodes {
        let mut c = node.client();
        let seen = |c: &mut gears_tests::Client| -> Vec<(String, Value)> {
            c.cmd(&["RG.INFOCLUSTER"]).array()[4]
                .array()
                .iter()
                .map(|s| (s.array()[1].text(), s.array()[9].clone()))
                .collect()
        };
        let complete = node.wait_for(10, || {
            seen(&mut c)
                .iter()
                .all(|(_, run_id)| matches!(run_id, Value::Bulk(_)))
        });
        assert!(complete, "port {}: {:?}", node.port, seen(&mut c));
        // Each shard's entry is that shard's own run id.
        for (id, run_id) in seen(&mut c) {
            let j = ids.iter().position(|i| *i == id).expect("a known shard");
            assert_eq!(
                run_id.text(),
                run_ids[j],
                "shard {id} seen from {}",
                node.port
            );
        }
    }
}

/// In a cluster, ids carry the id of the shard that gave them (1.2:
/// `<CLUSTER MYID>-N`), so ids from different shards never collide.
#[test]
fn execution_and_registration_ids_carry_the_shard_id() {
    let cluster = Cluster::start(2, &[]);
    let ids = cluster.ids();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut c = node.client();
        let id = c
            .cmd(&["RG.PYEXECUTE", "GB('ShardsIDReader').run()", "UNBLOCKING"])
            .text();
        assert!(
            id.starts_with(&format!("{}-", ids[i])),
            "{id} on shard {}",
            ids[i]
        );
        assert_eq!(c.cmd(&["RG.GETRESULTSBLOCKING", &id]).array().len(), 2);
    }
    // A registration made on the second node carries its id everywhere.
    let mut c = cluster.nodes[1].client();
    assert_eq!(
        c.py("GB('CommandReader').register(trigger='ids')"),
        Value::Status("OK".into())
    );
    for node in &cluster.nodes {
        let regs = node.client().registrations();
        assert_eq!(regs.len(), 1);
        assert!(
            regs[0].id.starts_with(&format!("{}-", ids[1])),
            "{}",
            regs[0].id
        );
    }
}

/// A slot that moves is seen without RG.REFRESHCLUSTER.
#[test]
fn a_moved_slot_is_noticed_by_itself() {
    let cluster = Cluster::start(2, &[]);
    let ids = cluster.ids();
    for node in &cluster.nodes {
        node.client()
            .cmd(&["CLUSTER", "SETSLOT", "0", "NODE", &ids[1]]);
    }
    let mut c = cluster.nodes[1].client();
    let seen = cluster.nodes[1].wait_for(10, || {
        let (_, shards) = info(&mut c);
        shards.iter().any(|s| s.0 == ids[1] && s.2 == 0)
    });
    assert!(seen, "{:?}", info(&mut c));
    let r = c.py("GB('ShardsIDReader').map(lambda x: hashtag()).run()");
    let tag = r.results()[0].clone();
    assert_eq!(
        c.cmd(&["CLUSTER", "KEYSLOT", &format!("{{{tag}}}")]).int(),
        0
    );
}

/// Off-cluster, 1.2's answer.
#[test]
fn a_single_server_has_no_cluster() {
    let s = gears_tests::Server::start(&[]);
    let mut c = s.client();
    assert_eq!(
        c.cmd(&["RG.INFOCLUSTER"]),
        Value::Status("no cluster mode".into())
    );
    assert_eq!(c.cmd(&["RG.REFRESHCLUSTER"]), Value::Status("OK".into()));
}

fn network_tests_from(node: &gears_tests::Server, sender: &str) -> usize {
    node.log()
        .matches(&format!("network test message from {sender}"))
        .count()
}

/// Messages between shards: delivered once each, resent after a dropped
/// connection, ignored when repeated, refused from ordinary clients when
/// the cluster has its own user.
#[test]
fn messages_between_shards_arrive_once() {
    let cluster = Cluster::start(3, &[]);
    let ids = cluster.ids();
    let mut c = cluster.nodes[0].client();
    assert_eq!(c.cmd(&["RG.NETWORKTEST"]), Value::Status("OK".into()));
    for node in &cluster.nodes[1..] {
        assert!(node.wait_for(10, || network_tests_from(node, &ids[0]) == 1));
    }
    assert_eq!(network_tests_from(&cluster.nodes[0], &ids[0]), 0);

    // The receivers drop every client, the module's connection included:
    // the next message goes on a new connection, once.
    for node in &cluster.nodes[1..] {
        node.client()
            .cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    }
    c.cmd(&["RG.NETWORKTEST"]);
    for node in &cluster.nodes[1..] {
        assert!(
            node.wait_for(10, || network_tests_from(node, &ids[0]) == 2),
            "{}",
            node.log()
        );
    }
    // A marker: messages to a shard leave in order, each once the one
    // before is acknowledged (and then never sent again). Once the marker
    // has arrived, a second copy of the second message can not come.
    c.cmd(&["RG.NETWORKTEST"]);
    for node in &cluster.nodes[1..] {
        assert!(
            node.wait_for(10, || network_tests_from(node, &ids[0]) >= 3),
            "{}",
            node.log()
        );
        assert_eq!(network_tests_from(node, &ids[0]), 3);
    }

    // A message id seen before is acknowledged and ignored; bad ones fail.
    let mut d = cluster.nodes[1].client();
    let msg = |d: &mut gears_tests::Client, receiver: &str, id: &str| {
        d.cmd(&["RG.INNERMSGCOMMAND", "tester", "run1", receiver, "", id])
    };
    assert_eq!(
        msg(&mut d, "RG_NetworkTest", "7"),
        Value::Status("OK".into())
    );
    assert_eq!(
        msg(&mut d, "RG_NetworkTest", "7"),
        Value::Status("duplicate message ignored".into())
    );
    assert_eq!(
        msg(&mut d, "RG_NetworkTest", "x").error(),
        "bad msg id given"
    );
    assert_eq!(
        msg(&mut d, "Nothing", "8").error(),
        "can not find the callback requested"
    );
    assert_eq!(network_tests_from(&cluster.nodes[1], "tester"), 1);

    // With a cluster user, only it may send; the shards still talk.
    for node in &cluster.nodes {
        let mut n = node.client();
        n.cmd(&["ACL", "SETUSER", "gears", "on", ">shards", "+@all", "~*"]);
        n.cmd(&["CONFIG", "SET", "masteruser", "gears"]);
        n.cmd(&["CONFIG", "SET", "masterauth", "shards"]);
    }
    assert!(msg(&mut d, "RG_NetworkTest", "9")
        .error()
        .contains("internal to the gears module"));
    c.cmd(&["RG.NETWORKTEST"]);
    for node in &cluster.nodes[1..] {
        assert!(
            node.wait_for(10, || network_tests_from(node, &ids[0]) == 4),
            "{}",
            node.log()
        );
    }
}

/// 300 keys `k:1`..`k:300` holding their number, each on its own shard.
fn spread_keys(cluster: &Cluster) {
    for i in 1..=300 {
        let key = format!("k:{i}");
        cluster
            .node_of(&key)
            .client()
            .cmd(&["SET", &key, &i.to_string()]);
    }
    for node in &cluster.nodes {
        assert!(node.client().cmd(&["DBSIZE"]).int() > 50, "keys are spread");
    }
}

/// run() spans the shards: each reads its own keys, the shard that got the
/// script answers for all of them, as one server would.
#[test]
fn run_answers_over_every_shard() {
    let cluster = Cluster::start(3, &[]);
    let mut ids = cluster.ids();
    ids.sort();
    spread_keys(&cluster);
    let mut c = cluster.nodes[1].client();
    let mut shards = c.py("GB('ShardsIDReader').run()").results();
    shards.sort();
    assert_eq!(shards, ids);
    let total: i64 = (1..=300).sum();
    let one = |c: &mut gears_tests::Client, script: &str| -> Vec<String> {
        let r = c.py(script);
        assert_eq!(r.errors(), Vec::<String>::new(), "{script}");
        r.results()
    };
    assert_eq!(
        one(&mut c, "GB().map(lambda x: int(x['value'])).aggregate(0, lambda a, x: a + x, lambda a, x: a + x).run('k:*')"),
        [total.to_string()]
    );
    assert_eq!(one(&mut c, "GB().count().run('k:*')"), ["300"]);
    assert_eq!(
        one(
            &mut c,
            "GB().map(lambda x: int(x['value'])).avg().run('k:*')"
        ),
        ["150.5"]
    );
    let mut by = one(
        &mut c,
        "GB().countby(lambda x: int(x['value']) % 3).map(lambda r: '%s=%s' % (r['key'], r['value'])).run('k:*')",
    );
    by.sort();
    assert_eq!(by, ["0=100", "1=100", "2=100"]);
    let sorted = one(
        &mut c,
        "GB().map(lambda x: int(x['value'])).sort().limit(3).run('k:*')",
    );
    assert_eq!(sorted, ["1", "2", "3"]);
    let distinct = one(
        &mut c,
        "GB().map(lambda x: int(x['value']) % 7).distinct().count().run('k:*')",
    );
    assert_eq!(distinct, ["7"]);
    // async_local stays on the shard that got it.
    let local = c.cmd(&["DBSIZE"]).int().to_string();
    assert_eq!(
        one(&mut c, "GB().count().run('k:*', mode='async_local')"),
        [local]
    );
}

/// A shard that does not answer ends the run with an error within
/// ExecutionMaxIdleTime; the client is not left waiting.
#[test]
fn a_silent_shard_ends_the_run_with_an_error() {
    let mut cluster = Cluster::start(3, &["ExecutionMaxIdleTime", "1500"]);
    let gone = cluster.nodes.pop().unwrap();
    drop(gone);
    let mut c = cluster.nodes[0].client();
    let t = std::time::Instant::now();
    let r = c.py("GB('ShardsIDReader').run()");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );
    let errors = r.errors();
    assert_eq!(errors.len(), 1, "{r:?}");
    assert!(
        errors[0].contains("did not answer within ExecutionMaxIdleTime"),
        "{errors:?}"
    );
}

/// A registration sent to one shard is applied on all of them with the
/// same id; its trigger fires on the shard that owns the key; RG.UNREGISTER
/// on any shard removes it everywhere.
#[test]
fn registrations_reach_every_shard() {
    let cluster = Cluster::start(3, &[]);
    let mut c = cluster.nodes[0].client();
    assert_eq!(
        c.py("GB().foreach(lambda x: execute('INCR', '{%s}:seen' % hashtag())).register(prefix='ev:*', mode='sync')"),
        Value::Status("OK".into())
    );
    let id = c.registrations()[0].id.clone();
    for node in &cluster.nodes {
        let mut n = node.client();
        assert!(
            node.wait_for(10, || n.registrations().iter().any(|r| r.id == id)),
            "{}",
            node.log()
        );
    }
    let mut per_node = vec![0; 3];
    for i in 0..60 {
        let key = format!("ev:{i}");
        let owner = cluster.node_of(&key);
        owner.client().cmd(&["SET", &key, "v"]);
        let at = cluster
            .nodes
            .iter()
            .position(|n| n.port == owner.port)
            .unwrap();
        per_node[at] += 1;
    }
    for (node, want) in cluster.nodes.iter().zip(&per_node) {
        let mut n = node.client();
        let tag = n
            .py("GB('ShardsIDReader').map(lambda x: hashtag()).run(mode='async_local')")
            .results()[0]
            .clone();
        assert_eq!(
            n.cmd(&["GET", &format!("{{{tag}}}:seen")]).text(),
            want.to_string()
        );
    }
    let mut last = cluster.nodes[2].client();
    assert_eq!(
        last.cmd(&["RG.UNREGISTER", &id]),
        Value::Status("OK".into())
    );
    for node in &cluster.nodes {
        let mut n = node.client();
        assert!(
            node.wait_for(10, || n.registrations().is_empty()),
            "{}",
            node.log()
        );
    }
}

/// A hooked command keeps Redis Cluster's own answers: MOVED for a key of
/// another shard, CROSSSLOT for keys of several slots; the hook runs on
/// the shard that owns the key.
#[test]
fn hooks_keep_moved_and_crossslot() {
    let cluster = Cluster::start(2, &[]);
    let mut c = cluster.nodes[0].client();
    c.py("GB('CommandReader').map(lambda x: call_next(*x[1:])).foreach(lambda x: execute('INCR', '{%s}:hooked' % hashtag())).register(hook='set', mode='sync')");
    for node in &cluster.nodes {
        let mut n = node.client();
        assert!(node.wait_for(10, || n.registrations().len() == 1));
    }
    // Keys of each shard.
    let mine = (0..1000)
        .map(|i| format!("a{i}"))
        .find(|k| cluster.node_of(k).port == cluster.nodes[0].port)
        .unwrap();
    let theirs = (0..1000)
        .map(|i| format!("a{i}"))
        .find(|k| cluster.node_of(k).port == cluster.nodes[1].port)
        .unwrap();
    // (The hook answers what call_next gave it, as a string.)
    assert_eq!(c.cmd(&["SET", &mine, "v"]).text(), "OK");
    assert!(c.cmd(&["SET", &theirs, "v"]).error().starts_with("MOVED"));
    assert!(c
        .cmd(&["MSET", &mine, "1", &theirs, "2"])
        .error()
        .starts_with("CROSSSLOT"));
    let mut other = cluster.nodes[1].client();
    assert_eq!(other.cmd(&["SET", &theirs, "v"]).text(), "OK");
    for node in &cluster.nodes {
        let mut n = node.client();
        let tag = n
            .py("GB('ShardsIDReader').map(lambda x: hashtag()).run(mode='async_local')")
            .results()[0]
            .clone();
        assert_eq!(n.cmd(&["GET", &format!("{{{tag}}}:hooked")]).text(), "1");
    }
}

/// repartition() sends each record to the shard owning its extracted key:
/// the steps after it run there (their writes land on that shard).
#[test]
fn repartition_moves_records_to_the_owning_shard() {
    let cluster = Cluster::start(3, &[]);
    spread_keys(&cluster);
    let mut c = cluster.nodes[0].client();
    let r = c.py("GB().repartition(lambda x: 'dest:' + x['value'])\
         .foreach(lambda x: execute('SET', 'dest:' + x['value'], 'here'))\
         .count().run('k:*')");
    assert_eq!(r.errors(), Vec::<String>::new());
    assert_eq!(r.results(), ["300"]);
    // Every shard holds exactly the dest: keys it owns.
    let mut total = 0;
    for node in &cluster.nodes {
        let keys = node.client().cmd(&["KEYS", "dest:*"]).texts();
        for key in &keys {
            assert_eq!(
                cluster.node_of(key).port,
                node.port,
                "{key} is on another shard"
            );
        }
        total += keys.len();
    }
    assert_eq!(total, 300);
}

/// A session's requirements reach the other shards before its
/// registrations (which import them there).
#[test]
fn requirements_travel_with_registrations() {
    let cluster = Cluster::start(2, &["PythonInstallationDir", "./pyenv"]);
    let mut c = cluster.nodes[0].client();
    c.py_with(
        &["REQUIREMENTS", "humanize==4.9.0"],
        "import humanize\nGB('CommandReader').map(lambda x: humanize.intcomma(int(x[1]))).register(trigger='hum', mode='sync')",
    );
    let mut other = cluster.nodes[1].client();
    assert!(
        cluster.nodes[1].wait_for(30, || other.registrations().len() == 1),
        "{}",
        cluster.nodes[1].log()
    );
    assert_eq!(other.cmd(&["RG.PYDUMPREQS"]).array().len(), 1);
    assert_eq!(
        other.cmd(&["RG.TRIGGER", "hum", "1234"]),
        Value::Array(vec![gears_tests::bulk("1,234")])
    );
}

/// RG.ABORTEXECUTION on the shard that started a run aborts it on every
/// shard.
#[test]
fn aborting_a_run_aborts_it_everywhere() {
    let cluster = Cluster::start(2, &[]);
    let mut c = cluster.nodes[0].client();
    let id = c
        .cmd(&[
            "RG.PYEXECUTE",
            "def spin(x):\n    while True:\n        pass\nGB('ShardsIDReader').map(spin).run()",
            "UNBLOCKING",
        ])
        .text();
    let mut other = cluster.nodes[1].client();
    let status = |c: &mut gears_tests::Client| -> Option<String> {
        let dump = c.cmd(&["RG.DUMPEXECUTIONS"]);
        dump.array()
            .iter()
            .find(|e| e.array()[1].text() == id)
            .map(|e| e.array()[3].text())
    };
    assert!(cluster.nodes[1].wait_for(10, || status(&mut other).as_deref() == Some("running")));
    assert_eq!(
        c.cmd(&["RG.ABORTEXECUTION", &id]),
        Value::Status("OK".into())
    );
    // The spinning step on the other shard stops too (it would spin
    // forever otherwise), with the abort as its error.
    assert!(
        cluster.nodes[1].wait_for(10, || status(&mut other).as_deref() == Some("done")),
        "{:?}",
        status(&mut other)
    );
    let errors = other.cmd(&["RG.GETRESULTS", &id]).errors();
    assert!(errors.iter().any(|e| e.contains("aborted")), "{errors:?}");
}

/// A shard that joins the cluster (and gets slots) receives the
/// registrations the others have.
#[test]
fn a_joining_shard_gets_the_registrations() {
    let mut cluster = Cluster::start(2, &[]);
    let mut c = cluster.nodes[0].client();
    c.py("GB('CommandReader').map(lambda x: 'hello').register(trigger='greet', mode='sync')");
    let new_id = {
        let node = cluster.add_node(&[]);
        node.client().cmd(&["CLUSTER", "MYID"]).text()
    };
    for node in &cluster.nodes {
        node.client()
            .cmd(&["CLUSTER", "SETSLOT", "0", "NODE", &new_id]);
    }
    let new = cluster.nodes.last().unwrap();
    let mut n = new.client();
    assert!(
        new.wait_for(20, || n.registrations().len() == 1),
        "{}",
        new.log()
    );
    assert_eq!(
        n.cmd(&["RG.TRIGGER", "greet"]),
        Value::Array(vec![gears_tests::bulk("hello")])
    );
}

/// A shard that restarted (same node id, new run id) is talked to again;
/// the messages pending while it was away were meant for its previous
/// life and are dropped.
#[test]
fn a_restarted_shard_gets_new_messages_only() {
    let mut cluster = Cluster::start(2, &[]);
    let ids = cluster.ids();
    let mut c = cluster.nodes[0].client();
    c.cmd(&["RG.NETWORKTEST"]);
    assert!(cluster.nodes[1].wait_for(10, || network_tests_from(&cluster.nodes[1], &ids[0]) == 1));
    let old_run = cluster.nodes[1].client().cmd(&["RG.HELLO"]).text();
    // Away: the message can not be delivered. The sender's failed tries are
    // logged at the verbose level.
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "loglevel", "verbose"]),
        Value::Status("OK".into())
    );
    let mut away = cluster.nodes.pop().unwrap();
    away.stop(&["KILL"]);
    c.cmd(&["RG.NETWORKTEST"]);
    let tried = cluster.nodes[0].wait_for(20, || {
        let log = cluster.nodes[0].log();
        log.contains(&format!("shard {} did not take message", ids[1]))
            || log.contains(&format!("could not reach shard {}", ids[1]))
    });
    assert!(tried, "no try while away:\n{}", cluster.nodes[0].log());
    away.start_again();
    cluster.nodes.push(away);
    let back = cluster.nodes.last().unwrap();
    assert_ne!(back.client().cmd(&["RG.HELLO"]).text(), old_run);
    assert!(back.wait_for(30, || {
        back.client()
            .cmd(&["CLUSTER", "INFO"])
            .text()
            .contains("cluster_state:ok")
    }));
    // The sender notices the new life and drops what was pending for the
    // old one...
    let first = &cluster.nodes[0];
    assert!(first.wait_for(20, || first
        .log()
        .contains("restarted: 1 messages to it dropped")));
    // ...and talks to the new one (its log goes on from before: one
    // message came before the restart).
    c.cmd(&["RG.NETWORKTEST"]);
    assert!(
        back.wait_for(15, || network_tests_from(back, &ids[0]) == 2),
        "{}",
        back.log()
    );
    // A marker: messages leave in order, so once it has arrived, nothing
    // sent before it is still on its way (the dropped one included).
    c.cmd(&["RG.NETWORKTEST"]);
    assert!(
        back.wait_for(15, || network_tests_from(back, &ids[0]) >= 3),
        "{}",
        back.log()
    );
    assert_eq!(network_tests_from(back, &ids[0]), 3);
}

/// RG.GETEXECUTION id CLUSTER shows every shard's part of a run that spans
/// them; SHARD shows this shard's.
#[test]
fn get_execution_shows_every_shard() {
    let cluster = Cluster::start(3, &[]);
    let mut ids = cluster.ids();
    ids.sort();
    let mut c = cluster.nodes[0].client();
    let id = c
        .cmd(&["RG.PYEXECUTE", "GB('ShardsIDReader').run()", "UNBLOCKING"])
        .text();
    assert!(cluster.nodes[0].wait_for(10, || {
        c.cmd(&["RG.GETRESULTS", &id]) != Value::Error("execution is still running".into())
    }));
    let shards_of = |r: &Value| -> Vec<String> {
        let mut s: Vec<String> = r.array().iter().map(|e| e.array()[1].text()).collect();
        s.sort();
        s
    };
    let all = c.cmd(&["RG.GETEXECUTION", &id, "CLUSTER"]);
    assert_eq!(shards_of(&all), ids, "{all:?}");
    for entry in all.array() {
        let plan = entry.array()[3].array();
        assert_eq!(plan[1].text(), "done");
    }
    let mine = c.cmd(&["RG.GETEXECUTION", &id, "SHARD"]);
    assert_eq!(shards_of(&mine), [cluster.ids()[0].clone()]);
}

/// RG.PAUSEREGISTRATIONS on one shard pauses a stream registration on
/// every shard; unpausing reads what came meanwhile.
#[test]
fn pausing_a_stream_registration_pauses_it_everywhere() {
    let cluster = Cluster::start(2, &[]);
    let mut c = cluster.nodes[0].client();
    c.py("GB('StreamReader').foreach(lambda x: execute('INCR', '{%s}:read' % hashtag())).register(prefix='st*')");
    let id = c.registrations()[0].id.clone();
    let other = &cluster.nodes[1];
    let mut o = other.client();
    assert!(other.wait_for(10, || o.registrations().len() == 1));
    assert_eq!(
        c.cmd(&["RG.PAUSEREGISTRATIONS", &id]),
        Value::Status("OK".into())
    );
    // A stream the other shard owns.
    let stream = (0..1000)
        .map(|i| format!("st{i}"))
        .find(|k| cluster.node_of(k).port == other.port)
        .unwrap();
    let tag = o
        .py("GB('ShardsIDReader').map(lambda x: hashtag()).run(mode='async_local')")
        .results()[0]
        .clone();
    let read = format!("{{{tag}}}:read");
    assert!(
        other.wait_for(10, || o.registrations()[0].field("status").text()
            == "PAUSED")
    );
    o.cmd(&["XADD", &stream, "*", "f", "v"]);
    assert!(
        holds_for(std::time::Duration::from_millis(500), || {
            o.cmd(&["GET", &read]) == Value::Nil
        }),
        "read while paused"
    );
    assert_eq!(
        c.cmd(&["RG.UNPAUSEREGISTRATIONS", &id]),
        Value::Status("OK".into())
    );
    assert!(other.wait_for(10, || o.cmd(&["GET", &read]) == gears_tests::bulk("1")));
}

/// The client's answer waits for every shard: OK when all applied the
/// registrations, else 1.2's per-shard errors and no shard applies them
/// (here a shard lacks the package the registration's callback comes
/// from).
#[test]
fn registration_errors_come_back_per_shard() {
    let cluster = Cluster::start(2, &["PythonInstallationDir", "./pyenv"]);
    let ids = cluster.ids();
    let mut c = cluster.nodes[0].client();
    // Installed on the first shard only (the script registers nothing).
    c.py_with(&["REQUIREMENTS", "humanize==4.9.0"], "import humanize");
    let r = c.py("import humanize\nGB('CommandReader').map(lambda x: x[1]).map(humanize.intcomma).register(trigger='fmt', mode='sync')");
    let errors = r.array();
    assert_eq!(errors.len(), 1, "{r:?}");
    let e = errors[0].error();
    assert!(e.starts_with(&format!("ERR shard-{}:", ids[1])), "{e}");
    assert!(e.contains("humanize"), "{e}");
    // None applied it.
    assert!(c.registrations().is_empty());
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "fmt", "1000"]).error(),
        "ERR subcommand not found"
    );
    let mut other = cluster.nodes[1].client();
    assert!(other.registrations().is_empty());
    // Everything fine: OK, once every shard has it.
    assert_eq!(
        c.py("GB('CommandReader').map(lambda x: 'ok').register(trigger='fine', mode='sync')"),
        Value::Status("OK".into())
    );
    assert_eq!(other.registrations().len(), 1);
}

/// A registration one shard can not take (its hooked command is renamed
/// away there) is applied nowhere and answered with that shard's error.
#[test]
fn a_hook_one_shard_can_not_take_is_applied_nowhere() {
    let cluster = Cluster::start_with(
        2,
        |i| {
            if i == 1 {
                vec!["--rename-command", "hset", ""]
            } else {
                vec![]
            }
        },
        &[],
    );
    let ids = cluster.ids();
    let mut c = cluster.nodes[0].client();
    let r = c.py(
        "GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='hset', mode='sync')",
    );
    let errors = r.array();
    assert_eq!(errors.len(), 1, "{r:?}");
    assert_eq!(
        errors[0].error(),
        format!(
            "ERR shard-{}: Can not override an unexisting command",
            ids[1]
        )
    );
    for node in &cluster.nodes {
        assert!(
            node.client().registrations().is_empty(),
            "port {}",
            node.port
        );
    }
    // The hook is not in place on the first shard either.
    let key = (0..)
        .map(|i| format!("h{i}"))
        .find(|k| cluster.node_of(k).port == cluster.nodes[0].port)
        .expect("a key of the first shard");
    assert_eq!(c.cmd(&["HSET", &key, "f", "v"]).int(), 1);
}

/// Coroutine steps before the first boundary of a run that spans the
/// shards wait like anywhere else.
#[test]
fn coroutines_wait_in_a_run_over_every_shard() {
    let cluster = Cluster::start(2, &[]);
    let mut c = cluster.nodes[0].client();
    let r = c.py(
        "import asyncio\nasync def later(x):\n    await asyncio.sleep(0.05)\n    return 'waited ' + x\n\
         GB('ShardsIDReader').map(later).run()",
    );
    assert_eq!(r.errors(), Vec::<String>::new(), "{r:?}");
    let mut got = r.results();
    got.sort();
    let mut want: Vec<String> = cluster
        .ids()
        .iter()
        .map(|i| format!("waited {i}"))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

/// Every operation gives over 3 shards what it gives on one server holding
/// all the keys.
#[test]
fn every_operation_matches_a_single_server() {
    let single = gears_tests::Server::start(&[]);
    let mut one = single.client();
    for i in 1..=300 {
        one.cmd(&["SET", &format!("k:{i}"), &i.to_string()]);
    }
    let cluster = Cluster::start(3, &[]);
    spread_keys(&cluster);
    let mut c = cluster.nodes[2].client();
    let v = "int(x['value'])";
    let scripts = [
        format!("GB().map(lambda x: {v}).filter(lambda x: x % 3 == 0).count().run('k:*')"),
        format!("GB().flatmap(lambda x: [{v}, -{v}]).map(lambda x: x * 2).aggregate(0, lambda a, x: a + abs(x), lambda a, x: a + x).run('k:*')"),
        format!("GB().groupby(lambda x: str({v} % 4), lambda k, a, r: (a or 0) + 1).map(lambda r: '%s=%s' % (r['key'], r['value'])).run('k:*')"),
        format!("GB().batchgroupby(lambda x: str({v} % 5), lambda k, records: len(records)).map(lambda r: '%s=%s' % (r['key'], r['value'])).run('k:*')"),
        format!("GB().aggregateby(lambda x: str({v} % 6), 0, lambda k, a, x: a + {v}, lambda k, a, x: a + x).map(lambda r: '%s=%s' % (r['key'], r['value'])).run('k:*')"),
        "GB().localgroupby(lambda x: 'all', lambda k, a, r: (a or 0) + 1).map(lambda r: r['value']).aggregate(0, lambda a, x: a + x, lambda a, x: a + x).run('k:*')".to_string(),
        format!("GB().map(lambda x: {v}).sort(False).limit(5).run('k:*')"),
        format!("GB().map(lambda x: {v} % 10).distinct().sort().run('k:*')"),
        format!("GB().map(lambda x: {v}).avg().run('k:*')"),
        "GB().countby(lambda x: x['key'][-1]).map(lambda r: '%s=%s' % (r['key'], r['value'])).run('k:*')".to_string(),
        format!("GB().accumulate(lambda a, x: (a or 0) + {v}).collect().accumulate(lambda a, x: (a or 0) + x).run('k:*')"),
    ];
    for script in &scripts {
        let sorted = |r: gears_tests::Value| -> (Vec<String>, Vec<String>) {
            let mut results = r.results();
            results.sort();
            (results, r.errors())
        };
        let want = sorted(one.py(script));
        let got = sorted(c.py(script));
        assert!(want.1.is_empty(), "{script}: {:?}", want.1);
        assert_eq!(got, want, "{script}");
    }
}

/// A shard that dies while a run is going on ends the run with an error
/// within ExecutionMaxIdleTime; the others are not left waiting.
#[test]
fn a_shard_dying_mid_run_ends_it_with_an_error() {
    let mut cluster = Cluster::start(3, &["ExecutionMaxIdleTime", "2000"]);
    spread_keys(&cluster);
    let mut c = cluster.nodes[0].client();
    // Slow enough on every shard for one to die meanwhile.
    let id = c
        .cmd(&[
            "RG.PYEXECUTE",
            "import time\nGB().map(lambda x: time.sleep(0.01) or 1).repartition(lambda x: str(x)).count().run('k:*')",
            "UNBLOCKING",
        ])
        .text();
    // Every shard is at work on it.
    for node in &cluster.nodes {
        let mut n = node.client();
        assert!(
            node.wait_for(20, || {
                n.executions().iter().any(|(_, status)| status == "running")
            }),
            "{:?}",
            n.executions()
        );
    }
    let gone = cluster.nodes.pop().unwrap();
    drop(gone);
    let t = std::time::Instant::now();
    let done = cluster.nodes[0].wait_for(15, || {
        c.cmd(&["RG.GETRESULTS", &id]) != Value::Error("execution is still running".into())
    });
    assert!(done, "the run never ended");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );
    let r = c.cmd(&["RG.GETRESULTS", &id]);
    assert!(
        r.errors()
            .iter()
            .any(|e| e.contains("did not answer within ExecutionMaxIdleTime")),
        "{r:?}"
    );
    // The surviving shard is not left waiting either.
    let mut other = cluster.nodes[1].client();
    assert!(cluster.nodes[1].wait_for(10, || {
        other
            .cmd(&["RG.DUMPEXECUTIONS"])
            .array()
            .iter()
            .filter(|e| e.array()[1].text() == id)
            .all(|e| e.array()[3].text() == "done")
    }));
}

/// A session upgraded on one shard is upgraded on every shard.
#[test]
fn an_upgraded_session_is_upgraded_everywhere() {
    let cluster = Cluster::start(2, &[]);
    let mut c = cluster.nodes[0].client();
    c.py_with(
        &["ID", "s1"],
        "GB('CommandReader').map(lambda x: 'v1').register(trigger='ver', mode='sync')",
    );
    let mut other = cluster.nodes[1].client();
    assert_eq!(
        other.cmd(&["RG.TRIGGER", "ver"]),
        Value::Array(vec![gears_tests::bulk("v1")])
    );
    c.py_with(
        &["ID", "s1", "UPGRADE"],
        "GB('CommandReader').map(lambda x: 'v2').register(trigger='ver', mode='sync')",
    );
    assert_eq!(
        other.cmd(&["RG.TRIGGER", "ver"]),
        Value::Array(vec![gears_tests::bulk("v2")])
    );
    assert_eq!(other.registrations().len(), 1);
    assert_eq!(c.registrations().len(), 1);
}

/// Registrations a shard prepared for another one that died before its
/// decision expire (with a log line) instead of staying prepared forever.
#[test]
fn prepared_registrations_expire_when_their_sender_dies() {
    // The first shard waits 8 s for every answer: time enough to kill it
    // before it decides, even on a loaded machine.
    let mut cluster = Cluster::start(3, &["PythonInstallReqMaxIdleTime", "8000"]);
    // The third shard stops answering: the first one waits for it, holding
    // its decision, while the second has prepared and answered.
    let pid = {
        let info = cluster.nodes[2].client().cmd(&["INFO", "server"]).text();
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .unwrap()
            .trim()
            .to_string()
    };
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stopped.success());
    let mut c = cluster.nodes[0].client();
    c.send(&[
        "RG.PYEXECUTE",
        "GB('CommandReader').map(lambda x: 1).register(trigger='orphan')",
    ]);
    // The message reaches the second shard, which prepares and answers.
    let second = &cluster.nodes[1];
    assert!(
        second.wait_for(20, || second.log().contains("waiting for its decision")),
        "{}",
        second.log()
    );
    // The sender dies before it decides.
    cluster.nodes[0].stop(&["KILL"]);
    let second = &cluster.nodes[1];
    assert!(
        second.wait_for(45, || second.log().contains("expired")),
        "{}",
        second.log()
    );
    assert!(second.log().contains("are not applied"));
    assert!(second.client().registrations().is_empty());
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
}
