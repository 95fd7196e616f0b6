//! The address mapping, table-driven: (configuration, what the guest is
//! known to use, direction, source, destination) -> translated tuple.
//! Pure functions: nothing is sent anywhere.

use std::net::SocketAddr;

use passt_engine::Config;
use passt_engine::engine::GuestState;
use passt_engine::mapping::{self, Direction};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Example configuration plus `--map-guest-addr` and `--dns-forward`.
fn full() -> Config {
    let mut c = Config::example();
    let m = &mut c.mapping;
    m.guest_addr_v4 = Some("192.0.2.2".parse().unwrap());
    m.host_addr_v4 = Some("203.0.113.5".parse().unwrap());
    m.guest_addr_v6 = Some("2001:db8::2".parse().unwrap());
    m.host_addr_v6 = Some("2001:db8:1::5".parse().unwrap());
    m.dns_forward_v4 = Some("192.0.2.53".parse().unwrap());
    m.dns_host_v4 = Some("127.0.0.53".parse().unwrap());
    m.dns_forward_v6 = Some("2001:db8::53".parse().unwrap());
    m.dns_host_v6 = Some("2001:db8:2::53".parse().unwrap());
    c
}

fn no_map_gw() -> Config {
    let mut c = full();
    c.mapping.host_loopback_v4 = None;
    c.mapping.host_loopback_v6 = None;
    c
}

fn seen() -> GuestState {
    GuestState {
        mac: None,
        ipv4: Some("192.0.2.15".parse().unwrap()),
        ipv6: Some("2001:db8::15".parse().unwrap()),
        ipv6_link_local: Some("fe80::15".parse().unwrap()),
    }
}

#[test]
fn mapping_table() {
    use Direction::{Inbound as In, Outbound as Out};
    let unknown = GuestState::default();
    let renumbered = GuestState {
        ipv4: Some("192.0.2.99".parse().unwrap()),
        ..GuestState::default()
    };
    let only_ll = GuestState {
        ipv6_link_local: Some("fe80::15".parse().unwrap()),
        ..GuestState::default()
    };
    type Row = (
        &'static str,
        Config,
        GuestState,
        Direction,
        &'static str,
        &'static str,
        Option<(&'static str, &'static str)>,
    );
    #[rustfmt::skip]
    let table: Vec<Row> = vec![
        // Outbound: (local bind on the host, host destination); the guest's
        // source port is kept.
        ("gateway is host loopback", full(), seen(), Out, "192.0.2.15:5000", "192.0.2.1:80", Some(("0.0.0.0:5000", "127.0.0.1:80"))),
        ("other addresses untouched", full(), seen(), Out, "192.0.2.15:5000", "198.51.100.7:80", Some(("0.0.0.0:5000", "198.51.100.7:80"))),
        ("--map-guest-addr", full(), seen(), Out, "192.0.2.15:5000", "192.0.2.2:22", Some(("0.0.0.0:5000", "203.0.113.5:22"))),
        ("--dns-forward to loopback resolver", full(), seen(), Out, "192.0.2.15:5000", "192.0.2.53:53", Some(("0.0.0.0:5000", "127.0.0.53:53"))),
        ("--dns-forward is DNS only", full(), seen(), Out, "192.0.2.15:5000", "192.0.2.53:80", Some(("0.0.0.0:5000", "192.0.2.53:80"))),
        ("v6 gateway is ::1", full(), seen(), Out, "[2001:db8::15]:5000", "[fe80::1]:80", Some(("[::]:5000", "[::1]:80"))),
        ("v6 link-local source too", full(), seen(), Out, "[fe80::15]:5000", "[fe80::1]:80", Some(("[::]:5000", "[::1]:80"))),
        ("v6 --dns-forward", full(), seen(), Out, "[2001:db8::15]:5000", "[2001:db8::53]:53", Some(("[::]:5000", "[2001:db8:2::53]:53"))),
        ("v6 --map-guest-addr", full(), seen(), Out, "[2001:db8::15]:5000", "[2001:db8::2]:22", Some(("[::]:5000", "[2001:db8:1::5]:22"))),
        ("--no-map-gw", no_map_gw(), seen(), Out, "192.0.2.15:5000", "192.0.2.1:80", Some(("0.0.0.0:5000", "192.0.2.1:80"))),
        ("--no-map-gw v6", no_map_gw(), seen(), Out, "[2001:db8::15]:5000", "[fe80::1]:80", Some(("[::]:5000", "[fe80::1]:80"))),
        // Inbound: (source the guest sees, guest destination).
        ("host loopback appears as gateway", full(), seen(), In, "127.0.0.1:4000", "0.0.0.0:7000", Some(("192.0.2.1:4000", "192.0.2.15:7000"))),
        ("any 127/8 peer", full(), seen(), In, "127.1.2.3:4000", "0.0.0.0:7000", Some(("192.0.2.1:4000", "192.0.2.15:7000"))),
        ("v4-mapped loopback", full(), seen(), In, "[::ffff:127.0.0.1]:4000", "0.0.0.0:7000", Some(("192.0.2.1:4000", "192.0.2.15:7000"))),
        ("::1 appears as fe80::1, to guest link-local", full(), seen(), In, "[::1]:4000", "[::]:7000", Some(("[fe80::1]:4000", "[fe80::15]:7000"))),
        ("host's own address appears as --map-guest-addr", full(), seen(), In, "203.0.113.5:4000", "0.0.0.0:7000", Some(("192.0.2.2:4000", "192.0.2.15:7000"))),
        ("v6 host's own address", full(), seen(), In, "[2001:db8:1::5]:4000", "[::]:7000", Some(("[2001:db8::2]:4000", "[2001:db8::15]:7000"))),
        ("resolver answers as --dns-forward", full(), seen(), In, "127.0.0.53:53", "0.0.0.0:5000", Some(("192.0.2.53:53", "192.0.2.15:5000"))),
        ("v6 resolver", full(), seen(), In, "[2001:db8:2::53]:53", "[::]:5000", Some(("[2001:db8::53]:53", "[2001:db8::15]:5000"))),
        ("loopback non-DNS port stays gateway", full(), seen(), In, "127.0.0.53:54", "0.0.0.0:5000", Some(("192.0.2.1:54", "192.0.2.15:5000"))),
        ("remote peer untouched", full(), seen(), In, "198.51.100.7:4000", "0.0.0.0:7000", Some(("198.51.100.7:4000", "192.0.2.15:7000"))),
        ("guest address unknown: configured one", full(), unknown, In, "198.51.100.7:4000", "0.0.0.0:7000", Some(("198.51.100.7:4000", "192.0.2.15:7000"))),
        ("guest uses another address: that one", full(), renumbered, In, "198.51.100.7:4000", "0.0.0.0:7000", Some(("198.51.100.7:4000", "192.0.2.99:7000"))),
        ("v6 global peer, only link-local seen: configured global", full(), only_ll, In, "[2001:db8:9::1]:4000", "[::]:7000", Some(("[2001:db8:9::1]:4000", "[2001:db8::15]:7000"))),
        ("--no-map-gw: loopback peer unrepresentable", no_map_gw(), seen(), In, "127.0.0.1:4000", "0.0.0.0:7000", None),
        ("--no-map-gw v6", no_map_gw(), seen(), In, "[::1]:4000", "[::]:7000", None),
    ];
    for (name, config, guest, dir, src, dst, expected) in table {
        let got = mapping::translate(&config, &guest, dir, sa(src), sa(dst));
        let expected = expected.map(|(a, b)| (sa(a), sa(b)));
        assert_eq!(got, expected, "{name}: {dir:?} {src} -> {dst}");
    }
}

#[test]
fn mapping_keeps_tcp_signatures() {
    // host_destination / guest_source (used by TCP) agree with the table.
    let c = full();
    assert_eq!(
        mapping::host_destination(&c, "192.0.2.1".parse().unwrap()),
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(
        mapping::guest_source(&c, "203.0.113.5".parse().unwrap()),
        Some("192.0.2.2".parse().unwrap())
    );
    assert_eq!(
        mapping::host_destination_port(&c, sa("192.0.2.53:53")),
        sa("127.0.0.53:53")
    );
}
