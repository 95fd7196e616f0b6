//! `runtime::netlink` against the real kernel: a tap in a network
//! namespace this test creates (and deletes), configured with
//! [`netlink::configure`], then checked with iproute2's own view
//! (`ip -j -n NS ...`) and with the module's readers.
//!
//! Needs root (namespaces, taps) and `ip`; without them each test prints
//! SKIPPED and returns.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use passt_engine::MacAddr;
use passt_engine::runtime::netlink::{
    self, Family, NetlinkError, NextHop, NsNetConfig, Route, TX_QUEUE_LEN,
};
use passt_engine::runtime::{NetNs, Tap};
use serde_json::Value;

/// How long the kernel may take to clear the tentative flag of an address
/// whose duplicate address detection is off (a queued work item); DAD
/// itself takes at least a second.
const DAD_OFF_SETTLE: Duration = Duration::from_millis(500);

/// A named network namespace (`/run/netns/NAME`), deleted on drop.
struct TestNs {
    name: String,
    ns: NetNs,
}

impl TestNs {
    fn create() -> Option<TestNs> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "passt-nl-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "SKIPPED: cannot create a network namespace with `ip netns add`; run as root"
            );
            return None;
        }
        let path = PathBuf::from("/run/netns").join(&name);
        let ns = match NetNs::open(&path) {
            Ok(ns) => ns,
            Err(e) => {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
                panic!("open {}: {e}", path.display());
            }
        };
        Some(TestNs { name, ns })
    }

    /// A tap named `name` in the namespace, open (so it has carrier).
    fn tap(&self, name: &str) -> Tap {
        self.ns
            .run_in(|| Tap::open(name))
            .expect("join the namespace")
            .expect("open the tap")
    }

    /// `ip -j -n NS ARGS...`, parsed.
    fn ip_json(&self, args: &[&str]) -> Value {
        let out = Command::new("ip")
            .args(["-j", "-n", &self.name])
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("ip -j prints JSON")
    }

    /// `ip -n NS ARGS...`, which must succeed.
    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The entry of `ip -j route` output whose `dst` is `dst`.
fn route_entry<'a>(routes: &'a Value, dst: &str) -> Option<&'a Value> {
    routes.as_array()?.iter().find(|r| r["dst"] == dst)
}

#[test]
fn configure_sets_the_mac_mtu_queue_addresses_routes_and_up_state() {
    let Some(t) = TestNs::create() else { return };
    let _tap = t.tap("tap0");
    let mac = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x20, 0x30]);
    let mut cfg = NsNetConfig::new("tap0");
    cfg.mac = Some(mac);
    cfg.addrs = vec![(ip("198.51.100.2"), 24), (ip("2001:db8:1::2"), 64)];
    let mut extra = Route::device(ip("203.0.113.0"), 24);
    extra.gateway = Some(ip("198.51.100.254"));
    extra.scope = netlink::Scope::Universe;
    extra.metric = Some(50);
    let mut extra6 = Route::device(ip("2001:db8:2::"), 48);
    extra6.gateway = Some(ip("2001:db8:1::fe"));
    extra6.scope = netlink::Scope::Universe;
    cfg.routes = vec![
        Route::default_via(ip("198.51.100.1")),
        Route::default_via(ip("2001:db8:1::1")),
        extra,
        extra6,
    ];
    netlink::configure(&t.ns, &cfg).expect("configure");

    let link = &t.ip_json(&["link", "show", "dev", "tap0"])[0];
    assert_eq!(link["mtu"], 65520);
    assert_eq!(link["address"], mac.to_string());
    assert_eq!(link["txqlen"], TX_QUEUE_LEN);
    let flags: Vec<&str> = link["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        flags.contains(&"UP") && flags.contains(&"LOWER_UP"),
        "{flags:?}"
    );
    let lo = &t.ip_json(&["link", "show", "dev", "lo"])[0];
    assert!(
        lo["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "lo is up: {lo}"
    );

    // Both addresses, and the kernel's link-local one, none tentative:
    // duplicate address detection is off. The kernel clears the tentative
    // flag from a work item even when DAD is off, so allow it a moment
    // (DAD itself would take at least RetransTimer, 1 s: RFC 4862 §5.4).
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut settled: Option<Instant> = None;
    let infos = loop {
        let a = t.ip_json(&["address", "show", "dev", "tap0"]);
        let infos = a[0]["addr_info"].as_array().unwrap().clone();
        let seen = infos.iter().any(|i| i["scope"] == "link");
        let first_seen = *settled.get_or_insert_with(Instant::now);
        let clear = infos.iter().all(|i| i.get("tentative").is_none());
        if !seen {
            settled = None;
        }
        if (seen && (clear || first_seen.elapsed() > DAD_OFF_SETTLE)) || Instant::now() > deadline {
            break infos;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for (addr, len) in [("198.51.100.2", 24), ("2001:db8:1::2", 64)] {
        assert!(
            infos
                .iter()
                .any(|i| i["local"] == addr && i["prefixlen"] == len),
            "{addr}/{len} in {infos:?}"
        );
    }
    assert!(
        infos
            .iter()
            .any(|i| i["scope"] == "link" && i["family"] == "inet6"),
        "a link-local address: {infos:?}"
    );
    for i in &infos {
        assert!(i.get("tentative").is_none(), "not tentative: {i}");
        assert!(i.get("dadfailed").is_none(), "no DAD failure: {i}");
    }

    let r4 = t.ip_json(&["-4", "route", "show", "dev", "tap0"]);
    let def = route_entry(&r4, "default").expect("a default route");
    assert_eq!(def["gateway"], "198.51.100.1");
    let e = route_entry(&r4, "203.0.113.0/24").expect("the extra route");
    assert_eq!(e["gateway"], "198.51.100.254");
    assert_eq!(e["metric"], 50);
    let r6 = t.ip_json(&["-6", "route", "show", "dev", "tap0"]);
    assert_eq!(
        route_entry(&r6, "default").expect("an IPv6 default")["gateway"],
        "2001:db8:1::1"
    );
    assert_eq!(
        route_entry(&r6, "2001:db8:2::/48").expect("extra IPv6")["gateway"],
        "2001:db8:1::fe"
    );

    // The module's own readers, in the namespace, see the same.
    let (l, addrs, routes) =
        t.ns.run_in(|| {
            (
                netlink::link("tap0").unwrap(),
                netlink::addresses("tap0").unwrap(),
                netlink::routes("tap0", None).unwrap(),
            )
        })
        .unwrap();
    assert_eq!(l.mtu, Some(65520));
    assert_eq!(l.mac, Some(mac));
    assert_eq!(l.txqueuelen, Some(TX_QUEUE_LEN));
    assert!(l.up && l.lower_up);
    assert_eq!(l.tx_dropped, Some(0), "nothing dropped on an idle tap");
    for a in &addrs {
        assert!(!a.tentative, "{a:?}");
    }
    assert!(
        addrs
            .iter()
            .any(|a| a.addr == ip("2001:db8:1::2") && a.prefix_len == 64 && a.copyable())
    );
    assert!(routes.iter().any(|r| r.is_default()
        && r.family() == Family::V4
        && r.gateway == Some(ip("198.51.100.1"))));
    assert!(routes.iter().any(|r| r.dst == ip("203.0.113.0")
        && r.prefix_len == 24
        && r.metric == Some(50)
        && r.gateway == Some(ip("198.51.100.254"))));
    // The kernel's prefix route for the address is marked as such.
    assert!(
        routes
            .iter()
            .any(|r| r.dst == ip("198.51.100.0") && r.kernel)
    );

    // Configuring again changes nothing and is not an error.
    netlink::configure(&t.ns, &cfg).expect("configure again");
}

#[test]
fn a_gateway_outside_every_prefix_is_reached_through_a_device_route() {
    let Some(t) = TestNs::create() else { return };
    let _tap = t.tap("tap0");
    let mut cfg = NsNetConfig::new("tap0");
    cfg.addrs = vec![(ip("198.51.100.2"), 32), (ip("2001:db8:1::2"), 128)];
    cfg.routes = vec![
        Route::default_via(ip("198.51.100.1")),
        Route::default_via(ip("2001:db8:1::1")),
    ];
    netlink::configure(&t.ns, &cfg).expect("configure");
    let r4 = t.ip_json(&["-4", "route", "show", "dev", "tap0"]);
    assert_eq!(
        route_entry(&r4, "default").expect("default")["gateway"],
        "198.51.100.1"
    );
    assert_eq!(
        route_entry(&r4, "198.51.100.1").expect("gateway route")["scope"],
        "link"
    );
    let r6 = t.ip_json(&["-6", "route", "show", "dev", "tap0"]);
    assert_eq!(
        route_entry(&r6, "default").expect("default")["gateway"],
        "2001:db8:1::1"
    );
    assert!(route_entry(&r6, "2001:db8:1::1").is_some(), "{r6}");
}

#[test]
fn routes_come_after_the_device_routes_their_gateways_need_whatever_the_order() {
    let Some(t) = TestNs::create() else { return };
    let _tap = t.tap("tap0");
    let mut cfg = NsNetConfig::new("tap0");
    cfg.addrs = vec![(ip("198.51.100.2"), 24)];
    let mut via = Route::device(ip("203.0.113.0"), 24);
    via.gateway = Some(ip("192.0.2.77"));
    via.scope = netlink::Scope::Universe;
    // The route through 192.0.2.77 is listed before the device route
    // that reaches that gateway.
    cfg.routes = vec![via, Route::device(ip("192.0.2.0"), 24)];
    netlink::configure(&t.ns, &cfg).expect("configure");
    let r4 = t.ip_json(&["-4", "route", "show", "dev", "tap0"]);
    assert_eq!(
        route_entry(&r4, "203.0.113.0/24").expect("route")["gateway"],
        "192.0.2.77"
    );
    assert_eq!(
        route_entry(&r4, "192.0.2.0/24").expect("device route")["scope"],
        "link"
    );
    assert!(
        route_entry(&r4, "192.0.2.77").is_none(),
        "no gateway route needed: {r4}"
    );
}

#[test]
fn readers_return_the_routes_ip_made_including_default_and_multipath() {
    let Some(t) = TestNs::create() else { return };
    let _tap = t.tap("tap0");
    t.ip(&["link", "set", "tap0", "up"]);
    t.ip(&["address", "add", "198.51.100.2/24", "dev", "tap0"]);
    t.ip(&[
        "-6",
        "address",
        "add",
        "2001:db8:1::2/64",
        "dev",
        "tap0",
        "nodad",
    ]);
    t.ip(&[
        "route",
        "add",
        "default",
        "via",
        "198.51.100.1",
        "metric",
        "100",
    ]);
    t.ip(&["-6", "route", "add", "default", "via", "2001:db8:1::1"]);
    t.ip(&[
        "route",
        "add",
        "203.0.113.0/24",
        "nexthop",
        "via",
        "198.51.100.10",
        "weight",
        "2",
        "nexthop",
        "via",
        "198.51.100.11",
    ]);
    t.ip(&["route", "add", "192.0.2.0/24", "dev", "tap0", "mtu", "1400"]);
    // Through a link-local gateway, as routers advertise themselves.
    t.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:5::/48",
        "via",
        "fe80::1",
        "dev",
        "tap0",
    ]);
    let (v4, v6, addrs, link) =
        t.ns.run_in(|| {
            (
                netlink::routes("tap0", Some(Family::V4)).unwrap(),
                netlink::routes("tap0", Some(Family::V6)).unwrap(),
                netlink::addresses("tap0").unwrap(),
                netlink::link("tap0").unwrap(),
            )
        })
        .unwrap();
    let mut want = Route::default_via(ip("198.51.100.1"));
    want.metric = Some(100);
    assert!(v4.contains(&want), "{v4:?}");
    assert!(v4.iter().all(|r| r.family() == Family::V4));
    let mp = v4
        .iter()
        .find(|r| r.dst == ip("203.0.113.0"))
        .expect("the multipath route");
    assert_eq!(mp.gateway, None);
    assert_eq!(
        mp.nexthops,
        vec![
            NextHop {
                gateway: Some(ip("198.51.100.10")),
                weight: 2,
                onlink: false
            },
            NextHop {
                gateway: Some(ip("198.51.100.11")),
                weight: 1,
                onlink: false
            },
        ]
    );
    let dev = v4
        .iter()
        .find(|r| r.dst == ip("192.0.2.0"))
        .expect("device route");
    assert_eq!(
        (dev.gateway, dev.mtu, dev.scope),
        (None, Some(1400), netlink::Scope::Link)
    );
    assert!(
        v6.iter()
            .any(|r| r.is_default() && r.gateway == Some(ip("2001:db8:1::1"))),
        "{v6:?}"
    );
    assert!(v6.iter().all(|r| r.family() == Family::V6));
    assert!(
        addrs
            .iter()
            .any(|a| a.addr == ip("198.51.100.2") && a.prefix_len == 24)
    );
    // By index, the same answers.
    let by_index =
        t.ns.run_in(|| netlink::routes(link.index, Some(Family::V4)).unwrap())
            .unwrap();
    assert_eq!(by_index, v4);

    // Copying them into a second namespace, as pasta copies the host's
    // template interface, reproduces them.
    let Some(t2) = TestNs::create() else { return };
    let _tap2 = t2.tap("tap0");
    let cfg =
        t.ns.run_in(|| {
            let mut cfg = NsNetConfig::new("tap0");
            cfg.copy_addresses_from("tap0", None)?;
            cfg.copy_routes_from("tap0", None)?;
            Ok::<_, NetlinkError>(cfg)
        })
        .unwrap()
        .expect("read the template");
    assert!(
        cfg.addrs.contains(&(ip("198.51.100.2"), 24)),
        "{:?}",
        cfg.addrs
    );
    assert!(
        cfg.addrs.contains(&(ip("2001:db8:1::2"), 64)),
        "{:?}",
        cfg.addrs
    );
    assert!(
        cfg.addrs
            .iter()
            .all(|(a, _)| !a.to_string().starts_with("fe80")),
        "link-local addresses are the namespace's own: {:?}",
        cfg.addrs
    );
    netlink::configure(&t2.ns, &cfg).expect("copy");
    let copied = t2
        .ns
        .run_in(|| netlink::routes("tap0", Some(Family::V4)).unwrap())
        .unwrap();
    for r in &v4 {
        assert!(
            copied.iter().any(|c| c.dst == r.dst
                && c.prefix_len == r.prefix_len
                && c.gateway == r.gateway
                && c.nexthops == r.nexthops
                && c.metric == r.metric
                && c.mtu == r.mtu),
            "{r} copied: {copied:?}"
        );
    }
    let copied6 = t2
        .ns
        .run_in(|| netlink::routes("tap0", Some(Family::V6)).unwrap())
        .unwrap();
    assert!(
        copied6
            .iter()
            .any(|r| r.is_default() && r.gateway == Some(ip("2001:db8:1::1"))),
        "{copied6:?}"
    );
    assert!(
        copied6
            .iter()
            .any(|r| r.dst == ip("2001:db8:5::") && r.gateway == Some(ip("fe80::1"))),
        "{copied6:?}"
    );
}

/// A route that exists already with the same destination and metric but
/// another gateway is the kernel's "File exists", not silently kept.
#[test]
fn a_conflicting_existing_route_is_reported() {
    let Some(t) = TestNs::create() else { return };
    let _tap = t.tap("tap0");
    t.ip(&["link", "set", "tap0", "up"]);
    t.ip(&["address", "add", "198.51.100.2/24", "dev", "tap0"]);
    t.ip(&["route", "add", "default", "via", "198.51.100.9"]);
    let mut cfg = NsNetConfig::new("tap0");
    cfg.addrs = vec![(ip("198.51.100.2"), 24)];
    cfg.routes = vec![Route::default_via(ip("198.51.100.1"))];
    let err = netlink::configure(&t.ns, &cfg).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ip route add default via 198.51.100.1 dev tap0: RTNETLINK answers: File exists"
    );
    // The same route as the existing one is no error.
    cfg.routes = vec![Route::default_via(ip("198.51.100.9"))];
    netlink::configure(&t.ns, &cfg).expect("same route");
}

/// The machine's own default route, as `ip` sees it, is among what the
/// reader returns for that interface.
#[test]
fn reading_the_hosts_routes_returns_its_default_route() {
    for (fam, flag) in [(Family::V4, "-4"), (Family::V6, "-6")] {
        let out = Command::new("ip")
            .args(["-j", flag, "route", "show", "default"])
            .output();
        let Ok(out) = out else {
            eprintln!("SKIPPED: no `ip`");
            return;
        };
        let defaults: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let Some(first) = defaults.as_array().and_then(|a| a.first()) else {
            eprintln!("SKIPPED: the host has no {fam:?} default route");
            continue;
        };
        let Some(dev) = first["dev"].as_str() else {
            continue;
        };
        let routes = netlink::routes(dev, Some(fam)).expect("read the host's routes");
        let def = routes
            .iter()
            .find(|r| r.is_default())
            .unwrap_or_else(|| panic!("a default route via {dev}: {routes:?}"));
        if let Some(gw) = first["gateway"].as_str() {
            assert_eq!(def.gateway, Some(ip(gw)));
        }
        let addrs = netlink::addresses(dev).expect("read the host's addresses");
        assert!(!addrs.is_empty(), "{dev} has an address");
    }
}

#[test]
fn link_up_brings_a_new_namespaces_loopback_up() {
    let Some(t) = TestNs::create() else { return };
    let before = t.ns.run_in(|| netlink::link("lo").unwrap()).unwrap();
    assert!(!before.up, "a new namespace's lo starts down");
    netlink::link_up(&t.ns, "lo").expect("lo up");
    let after = t.ns.run_in(|| netlink::link("lo").unwrap()).unwrap();
    assert!(after.up);
}

#[test]
fn an_unknown_interface_is_a_clean_error() {
    let Some(t) = TestNs::create() else { return };
    let err = netlink::configure(&t.ns, &NsNetConfig::new("nosuch0")).unwrap_err();
    assert!(matches!(err, NetlinkError::NoSuchDevice(_)), "{err:?}");
    assert_eq!(err.to_string(), "Cannot find device \"nosuch0\"");
    let err = netlink::link_up(&t.ns, "nosuch0").unwrap_err();
    assert!(matches!(err, NetlinkError::NoSuchDevice(_)), "{err:?}");
    let err =
        t.ns.run_in(|| netlink::routes("nosuch0", None))
            .unwrap()
            .unwrap_err();
    assert!(matches!(err, NetlinkError::NoSuchDevice(_)), "{err:?}");
    let err =
        t.ns.run_in(|| netlink::addresses(9999u32))
            .unwrap()
            .unwrap_err();
    assert!(matches!(err, NetlinkError::NoSuchDevice(_)), "{err:?}");
}

#[test]
fn a_bad_gateway_is_a_clean_error_worded_like_ip() {
    let Some(t) = TestNs::create() else { return };
    let _tap = t.tap("tap0");
    let mut cfg = NsNetConfig::new("tap0");
    cfg.addrs = vec![(ip("198.51.100.2"), 24)];
    // The prefix's broadcast address, and the namespace's own IPv6
    // address: the kernel takes neither as a next hop.
    for (gw, family) in [("198.51.100.255", ""), ("2001:db8:1::2", "-6 ")] {
        cfg.addrs = vec![(ip("198.51.100.2"), 24), (ip("2001:db8:1::2"), 64)];
        cfg.routes = vec![Route::default_via(ip(gw))];
        let err = netlink::configure(&t.ns, &cfg).unwrap_err();
        let NetlinkError::Kernel { errno, .. } = &err else {
            panic!("a kernel refusal for {gw}: {err:?}")
        };
        assert_ne!(*errno, 0);
        let msg = err.to_string();
        eprintln!("{msg}");
        let want = format!("ip {family}route add default via {gw} dev tap0: RTNETLINK answers: ");
        assert!(msg.starts_with(&want), "{msg}");
    }
    // What the kernel never sees: a loopback or multicast gateway, mixed
    // families.
    cfg.routes = vec![Route::default_via(ip("127.0.0.1"))];
    let err = netlink::configure(&t.ns, &cfg).unwrap_err();
    assert!(matches!(err, NetlinkError::Invalid { .. }), "{err:?}");
    cfg.routes = vec![Route::default_via(ip("224.0.0.1"))];
    let err = netlink::configure(&t.ns, &cfg).unwrap_err();
    assert!(matches!(err, NetlinkError::Invalid { .. }), "{err:?}");
    let mut mixed = Route::default_via(ip("2001:db8::1"));
    mixed.dst = ip("0.0.0.0");
    cfg.routes = vec![mixed];
    let err = netlink::configure(&t.ns, &cfg).unwrap_err();
    assert!(matches!(err, NetlinkError::Invalid { .. }), "{err:?}");
    // An MTU the tap cannot take.
    let mut cfg = NsNetConfig::new("tap0");
    cfg.mtu = Some(70000);
    let err = netlink::configure(&t.ns, &cfg).unwrap_err();
    assert_eq!(err.errno(), Some(libc::EINVAL), "{err}");
    assert!(
        err.to_string()
            .starts_with("ip link set dev tap0 mtu 70000: RTNETLINK answers: "),
        "{err}"
    );
}

/// The measurement behind [`TX_QUEUE_LEN`] (docs/decisions.md): bulk TCP
/// at MTU 1500 from namespace A to namespace B, through two taps joined by
/// a single-threaded userspace relay (as pasta reads its tap: up to 64
/// frames a wake-up), for several queue lengths; prints the frames the
/// sending tap dropped, the sender's retransmissions and the throughput.
/// `PASST_NL_CC` picks the senders' congestion control (default cubic, the
/// usual distribution default), `PASST_NL_MIB` the transfer size,
/// `PASST_NL_FLOWS` the number of parallel connections, `PASST_NL_QLENS`
/// the queue lengths (comma-separated).
/// Run: `cargo test -p passt-engine --test netlink -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: prints a table, asserts nothing about the figures"]
fn measure_tx_queue_length_against_drops_at_mtu_1500() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    let cc = std::env::var("PASST_NL_CC").unwrap_or_else(|_| "cubic".into());
    let mib: usize = std::env::var("PASST_NL_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let flows: usize = std::env::var("PASST_NL_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .clamp(1, 64);
    println!("cc {cc}, {mib} MiB per run over {flows} connection(s)");
    println!("txqueuelen  tx_dropped  retrans  Gbit/s");
    let qlens: Vec<u32> = std::env::var("PASST_NL_QLENS")
        .ok()
        .map(|v| v.split(',').filter_map(|q| q.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![500, 1000, 2000, 5000, 10000]);
    for qlen in qlens {
        let (Some(a), Some(b)) = (TestNs::create(), TestNs::create()) else {
            return;
        };
        let tap_a = Arc::new(a.tap("tapa"));
        let tap_b = Arc::new(b.tap("tapb"));
        for (t, addr, mac) in [(&a, "198.51.100.1", 1u8), (&b, "198.51.100.2", 2)] {
            let mut cfg = NsNetConfig::new(if mac == 1 { "tapa" } else { "tapb" });
            cfg.mtu = Some(1500);
            cfg.txqueuelen = Some(qlen);
            cfg.mac = Some(MacAddr([0x02, 0, 0, 0, 0, mac]));
            cfg.addrs = vec![(ip(addr), 24)];
            netlink::configure(&t.ns, &cfg).expect("configure");
        }

        let stop = Arc::new(AtomicBool::new(false));
        let relay = {
            let (ta, tb, stop) = (tap_a.clone(), tap_b.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                let mut fds = [
                    libc::pollfd {
                        fd: ta.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: tb.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: two valid pollfds for the taps this thread holds.
                    unsafe { libc::poll(fds.as_mut_ptr(), 2, 50) };
                    for (from, to) in [(&ta, &tb), (&tb, &ta)] {
                        for _ in 0..64 {
                            match from.read_frame(&mut buf) {
                                Ok(n) => {
                                    let _ = to.write_frame(&buf[..n]);
                                }
                                Err(_) => break,
                            }
                        }
                    }
                }
            })
        };

        let listener =
            b.ns.run_in(|| TcpListener::bind("198.51.100.2:5001"))
                .unwrap()
                .expect("listen in B");
        let total = mib << 20;
        let per_flow = total / flows;
        let sink = std::thread::spawn(move || {
            let readers: Vec<_> = (0..flows)
                .map(|_| {
                    let (mut s, _) = listener.accept().expect("accept");
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 1 << 16];
                        let mut got = 0usize;
                        while got < per_flow {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => got += n,
                            }
                        }
                        got
                    })
                })
                .collect();
            readers
                .into_iter()
                .map(|r| r.join().unwrap())
                .sum::<usize>()
        });
        let conns: Vec<TcpStream> = (0..flows)
            .map(|_| {
                let conn =
                    a.ns.run_in(|| {
                        TcpStream::connect_timeout(
                            &"198.51.100.2:5001".parse().unwrap(),
                            Duration::from_secs(5),
                        )
                    })
                    .unwrap()
                    .expect("connect from A");
                conn.set_write_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                // SAFETY: setsockopt reads `cc.len()` bytes of `cc`.
                let rc = unsafe {
                    libc::setsockopt(
                        conn.as_raw_fd(),
                        libc::IPPROTO_TCP,
                        libc::TCP_CONGESTION,
                        cc.as_ptr().cast(),
                        cc.len() as libc::socklen_t,
                    )
                };
                assert_eq!(
                    rc,
                    0,
                    "congestion control {cc}: {}",
                    std::io::Error::last_os_error()
                );
                conn
            })
            .collect();
        let start = Instant::now();
        let senders: Vec<_> = conns
            .into_iter()
            .map(|mut conn| {
                std::thread::spawn(move || {
                    let chunk = vec![0x5au8; 1 << 16];
                    let mut sent = 0;
                    while sent < per_flow {
                        let n = chunk.len().min(per_flow - sent);
                        conn.write_all(&chunk[..n]).expect("send");
                        sent += n;
                    }
                    conn
                })
            })
            .collect();
        let conns: Vec<TcpStream> = senders.into_iter().map(|s| s.join().unwrap()).collect();
        let got = sink.join().unwrap();
        let secs = start.elapsed().as_secs_f64();
        let retrans: u32 = conns
            .iter()
            .map(|conn| {
                // SAFETY: tcp_info is plain data; getsockopt writes at most `len`.
                unsafe {
                    let mut info: libc::tcp_info = std::mem::zeroed();
                    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
                    libc::getsockopt(
                        conn.as_raw_fd(),
                        libc::IPPROTO_TCP,
                        libc::TCP_INFO,
                        (&mut info as *mut libc::tcp_info).cast(),
                        &mut len,
                    );
                    info.tcpi_total_retrans
                }
            })
            .sum();
        stop.store(true, Ordering::Relaxed);
        relay.join().unwrap();
        let dropped =
            a.ns.run_in(|| netlink::link("tapa").unwrap().tx_dropped)
                .unwrap();
        assert_eq!(got, per_flow * flows);
        println!(
            "{qlen:>10}  {:>10}  {retrans:>7}  {:>6.2}",
            dropped.unwrap_or(0),
            got as f64 * 8.0 / secs / 1e9
        );
    }
}

/// Rootless pasta's case: an unprivileged user (`nobody`) in a user and
/// network namespace of its own configures its tap. The test re-runs
/// itself under `setpriv` and `unshare -U -r -n`; the child does the work
/// and prints a marker the parent looks for.
#[test]
fn configure_works_unprivileged_in_its_own_user_namespace() {
    const CHILD: &str = "PASST_NL_UNPRIVILEGED_CHILD";
    const NAME: &str = "configure_works_unprivileged_in_its_own_user_namespace";
    if std::env::var_os(CHILD).is_some() {
        let ns = NetNs::current().expect("own namespace");
        let _tap = Tap::open("tap0").expect("a tap in our own namespace");
        let mut cfg = NsNetConfig::new("tap0");
        cfg.addrs = vec![(ip("198.51.100.2"), 24), (ip("2001:db8:1::2"), 64)];
        cfg.routes = vec![
            Route::default_via(ip("198.51.100.1")),
            Route::default_via(ip("2001:db8:1::1")),
        ];
        netlink::configure(&ns, &cfg).expect("configure unprivileged");
        let l = netlink::link("tap0").unwrap();
        assert!(
            l.up && l.mtu == Some(65520) && l.txqueuelen == Some(TX_QUEUE_LEN),
            "{l:?}"
        );
        assert!(netlink::link("lo").unwrap().up);
        // As in the root test: the tentative flag is cleared from a work
        // item, well within DAD_OFF_SETTLE when DAD is off.
        let start = std::time::Instant::now();
        let addrs = loop {
            let addrs = netlink::addresses("tap0").unwrap();
            if addrs.iter().all(|a| !a.tentative) || start.elapsed() > DAD_OFF_SETTLE {
                break addrs;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(addrs.iter().all(|a| !a.tentative), "{addrs:?}");
        let routes = netlink::routes("tap0", None).unwrap();
        assert_eq!(
            routes.iter().filter(|r| r.is_default()).count(),
            2,
            "{routes:?}"
        );
        println!("UNPRIVILEGED-CONFIGURE-OK");
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args(["unshare", "-U", "-r", "-n", "--"])
        .arg(exe)
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIPPED: cannot run setpriv ({e})");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("unshare failed") {
        eprintln!("SKIPPED: no unprivileged user namespaces: {stderr}");
        return;
    }
    assert!(
        out.status.success() && stdout.contains("UNPRIVILEGED-CONFIGURE-OK"),
        "child failed:\n{stdout}\n{stderr}"
    );
}
