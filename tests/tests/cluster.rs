//! The module in a Redis Cluster: topology, RG.INFOCLUSTER,
//! RG.REFRESHCLUSTER, hashtag() per shard.

use gears_tests::{Cluster, Value};

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
