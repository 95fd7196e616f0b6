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
    // duplicate address detection is off.
    let deadline = Instant::now() + Duration::from_secs(3);
    let infos = loop {
        let a = t.ip_json(&["address", "show", "dev", "tap0"]);
        let infos = a[0]["addr_info"].as_array().unwrap().clone();
        if infos.iter().any(|i| i["scope"] == "link") || Instant::now() > deadline {
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

    // Copying them into a second namespace reproduces them.
    let Some(t2) = TestNs::create() else { return };
    let _tap2 = t2.tap("tap0");
    let mut cfg = NsNetConfig::new("tap0");
    cfg.addrs = addrs
        .iter()
        .filter(|a| a.copyable())
        .map(|a| (a.addr, a.prefix_len))
        .collect();
    cfg.routes = v4.iter().chain(&v6).cloned().collect();
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
