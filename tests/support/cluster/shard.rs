//! A 3-primary Redis Cluster on loopback: three `redis-server
//! --cluster-enabled yes` on free ports (bus ports free too, set with
//! `cluster-port`), joined by `redis-cli --cluster create`.

use std::process::Command;
use std::time::{Duration, Instant};

use super::tls::{Ca, server_args};
use super::{PATIENCE, Redis, free_port};

pub struct RedisCluster {
    pub nodes: Vec<Redis>,
    /// With [`RedisCluster::start_tls`]: each node's TLS port (the plain
    /// ones stay for the test's own commands), and the certificates.
    pub tls_ports: Vec<u16>,
    pub files: Option<tempfile::TempDir>,
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
        Self::start_with(|_| Vec::new(), Vec::new(), None)
    }

    /// Nodes that keep serving their slots while another primary is down
    /// (`cluster-require-full-coverage no`).
    pub fn start_partial() -> RedisCluster {
        let args = |_| vec!["--cluster-require-full-coverage".into(), "no".into()];
        Self::start_with(args, Vec::new(), None)
    }

    /// Nodes with a TLS port each serving `server` (signed by `ca`), the
    /// cluster bus over TLS too (`tls-cluster yes`).
    pub fn start_tls(ca: &Ca, server: &(String, String)) -> RedisCluster {
        let files = tempfile::tempdir().unwrap();
        let tls_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let ports = tls_ports.clone();
        let dir = files.path().to_path_buf();
        let (ca, server) = (ca, server.clone());
        let args = move |i: usize| {
            let mut a = server_args(&dir, ca, &server, ports[i], "no");
            a.extend(["--tls-cluster".to_string(), "yes".to_string()]);
            a
        };
        Self::start_with(args, tls_ports, Some(files))
    }

    fn start_with(
        extra: impl Fn(usize) -> Vec<String>,
        tls_ports: Vec<u16>,
        files: Option<tempfile::TempDir>,
    ) -> RedisCluster {
        let nodes: Vec<Redis> = (0..3)
            .map(|i| {
                let mut args: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &free_port().to_string(),
                    "--cluster-node-timeout",
                    "1000",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                args.extend(extra(i));
                Redis::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
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
        let c = RedisCluster {
            nodes,
            tls_ports,
            files,
        };
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

    /// `rediss+cluster://` with the first node's TLS port as the seed.
    pub fn tls_url(&self) -> String {
        format!("rediss+cluster://127.0.0.1:{}/0", self.tls_ports[0])
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

    /// `CLUSTER SETSLOT slot ARGS…` on node `i`.
    pub fn setslot(&self, i: usize, slot: u16, args: &[&str]) {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SETSLOT").arg(slot);
        for a in args {
            cmd.arg(*a);
        }
        let () = cmd.query(&mut self.nodes[i].conn()).unwrap();
    }

    /// Starts moving `slot` to the next node (importing there, migrating
    /// at its owner): (from, to).
    pub fn begin_move(&self, slot: u16) -> (usize, usize) {
        let from = self.owner(slot);
        let to = (from + 1) % self.nodes.len();
        self.setslot(to, slot, &["IMPORTING", &self.id(from)]);
        self.setslot(from, slot, &["MIGRATING", &self.id(to)]);
        (from, to)
    }

    /// Ends a move: every node learns that `to` serves `slot` (its keys
    /// must be there already).
    pub fn end_move(&self, slot: u16, to: usize) {
        let id = self.id(to);
        for i in 0..self.nodes.len() {
            self.setslot(i, slot, &["NODE", &id]);
        }
    }

    /// Whether node `i` holds `key`, asked as after an ASK (a slot it
    /// is importing answers too).
    pub fn holds(&self, i: usize, key: &str) -> bool {
        let mut conn = self.nodes[i].conn();
        let () = redis::cmd("ASKING").query(&mut conn).unwrap();
        redis::cmd("EXISTS").arg(key).query::<i64>(&mut conn).ok() == Some(1)
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
