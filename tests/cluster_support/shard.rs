//! A 3-primary Redis Cluster on loopback: three `redis-server
//! --cluster-enabled yes` on free ports (bus ports free too, set with
//! `cluster-port`), joined by `redis-cli --cluster create`.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{PATIENCE, Redis, free_port};

pub struct RedisCluster {
    pub nodes: Vec<Redis>,
}

fn info(r: &Redis) -> Option<String> {
    let client = redis::Client::open(r.url()).ok()?;
    let mut c = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok()
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<Redis> = (0..3)
            .map(|_| {
                let bus = free_port().to_string();
                Redis::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "1000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli (Debian package redis-tools) runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let c = RedisCluster { nodes };
        c.wait_state("ok");
        c
    }

    /// Waits until every running node reports `cluster_state:STATE`.
    pub fn wait_state(&self, state: &str) {
        self.wait_state_on(&self.nodes.iter().collect::<Vec<_>>(), state);
    }

    pub fn wait_state_on(&self, nodes: &[&Redis], state: &str) {
        let want = format!("cluster_state:{state}");
        let deadline = Instant::now() + PATIENCE;
        while !nodes
            .iter()
            .all(|n| info(n).is_some_and(|i| i.contains(&want)))
        {
            assert!(Instant::now() < deadline, "cluster never reached {want}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis+cluster://` with the first `seeds` nodes as seeds.
    pub fn url(&self, seeds: usize) -> String {
        let hosts: Vec<String> = self.nodes[..seeds]
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}/0", hosts.join(","))
    }

    /// The node id of each node.
    pub fn id(&self, i: usize) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.nodes[i].conn())
            .unwrap()
    }

    /// The index of the node serving `slot`.
    pub fn owner(&self, slot: u16) -> usize {
        let ranges: Vec<(i64, i64, Vec<redis::Value>)> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query::<Vec<redis::Value>>(&mut self.nodes[0].conn())
            .unwrap()
            .into_iter()
            .map(|r| redis::from_redis_value(r).unwrap())
            .collect();
        let (_, _, node) = ranges
            .iter()
            .find(|(a, b, _)| *a <= i64::from(slot) && i64::from(slot) <= *b)
            .unwrap();
        let port: i64 = redis::from_redis_value(node[1].clone()).unwrap();
        self.nodes
            .iter()
            .position(|n| i64::from(n.port) == port)
            .unwrap()
    }

    /// The slot of a key, as the cluster computes it.
    pub fn slot(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.nodes[0].conn())
            .unwrap()
    }
}
