//! An authoritative DNS server on loopback for the milter-level DNS
//! benchmark (`benches/dns-milter-bench.sh`): `DOMAINS` sender domains
//! `d<k>.bench`, each with an SPF record that authorises one /24 directly
//! and one through `include:` (two TXT lookups per check, as for a large
//! provider), the networks `milter_load --spf-domains` draws its clients
//! from. A process of its own, so that its CPU is not the milter's.
//!
//! ```text
//! cargo run --release --example spf_zone_server -- 200
//! ```
//!
//! Prints `listening on 127.0.0.1:PORT` (UDP and TCP) and serves until killed.

#[path = "../tests/support/dns/mod.rs"]
mod dns_support;

use std::fmt::Write as _;

/// The zone text for `bench.`: the records `milter_load`'s plan expects
/// (examples/milter_load/plan.rs, `spf_client`).
fn zone(domains: u32) -> String {
    let mut z = String::from(
        "$TTL 3600\n@ IN SOA ns.bench. hostmaster.bench. 1 3600 600 86400 3600\n\
         @ IN NS ns.bench.\nns IN A 127.0.0.1\n",
    );
    for k in 0..domains {
        let (hi, lo) = (k >> 8, k & 0xff);
        let _ = writeln!(
            z,
            "d{k} IN TXT \"v=spf1 ip4:10.{hi}.{lo}.0/24 include:_i.d{k}.bench ~all\"\n\
             _i.d{k} IN TXT \"v=spf1 ip4:11.{hi}.{lo}.0/24 -all\""
        );
    }
    z
}

fn main() -> Result<(), String> {
    let domains: u32 = match std::env::args().nth(1) {
        Some(n) => n
            .parse()
            .map_err(|_| format!("{n:?}: DOMAINS must be a number"))?,
        None => 200,
    };
    if domains == 0 || domains > 65_536 {
        return Err("DOMAINS must be 1 to 65536".to_string());
    }
    let text = zone(domains);
    let rt = dns_support::runtime();
    rt.block_on(async move {
        let server = dns_support::serving(&[(&text, "bench.")]).await;
        println!("listening on {}", server.addr);
        std::future::pending::<()>().await;
    });
    Ok(())
}
