//! docs/cli.md's option table is the reference of `passt`'s command line
//! and this test runs it: every option the parser accepts has a row, every
//! row names options the parser accepts, and every row has a check of that
//! option's acceptance and meaning (through `cli::parse_args` and
//! `cli::build_config`, against a fixed host), keyed by the row's first
//! option. A new option therefore needs a row and a check, and a row
//! without a check fails here.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use passt_engine::cli::{
    self, CliError, DnsChoice, Options, SearchChoice, VHOST_USER_CAPABILITIES, Verbosity,
};
use passt_engine::config::Config;
use passt_engine::fwd::ForwardMode;
use passt_engine::hostnet::{HostIpv4, HostIpv6, HostNetwork, IfAddr};

const DOC: &str = include_str!("../../docs/cli.md");

/// The option names (`-x`, `--xyz`) of each row of the "## Options" table,
/// in order.
fn doc_rows() -> Vec<Vec<String>> {
    let start = DOC.find("\n## Options").expect("an Options section");
    let section = &DOC[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    let mut rows = Vec::new();
    for line in section[..end].lines() {
        let Some(first) = line.strip_prefix("| `") else {
            continue;
        };
        let cell = first.split('|').next().unwrap_or("");
        let names: Vec<String> = cell
            .trim()
            .trim_matches('`')
            .split(", ")
            .map(|n| n.split_whitespace().next().unwrap_or("").to_string())
            .collect();
        rows.push(names);
    }
    rows
}

fn host() -> HostNetwork {
    HostNetwork {
        ipv4: Some(HostIpv4 {
            ifname: "eth0".into(),
            addr: Ipv4Addr::new(192, 0, 2, 2),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
        }),
        ipv6: Some(HostIpv6 {
            ifname: "eth0".into(),
            addr: "2001:db8::2".parse().unwrap(),
            prefix_len: 64,
            gateway: Some("fe80::1".parse().unwrap()),
        }),
        addrs: vec![IfAddr {
            ifname: "eth0".into(),
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            prefix_len: 24,
        }],
        mtu: Some(1500),
        mac: None,
        dns: vec![
            "127.0.0.53".parse().unwrap(),
            "198.51.100.53".parse().unwrap(),
        ],
        search: vec!["example.test".into()],
    }
}

fn parse(args: &str) -> Result<Options, CliError> {
    cli::parse_args(std::iter::once("passt").chain(args.split_whitespace()))
}

fn ok(args: &str) -> Options {
    parse(args).unwrap_or_else(|e| panic!("{args}: {e}"))
}

fn config(args: &str) -> Config {
    cli::build_config(&ok(args), &host()).unwrap_or_else(|e| panic!("{args}: {e}"))
}

fn refused(args: &str) -> String {
    match parse(args) {
        Err(CliError::Invalid(m)) => m,
        other => panic!("{args}: expected a refusal, got {other:?}"),
    }
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

type Check = fn();

/// One check per row, keyed by the row's first option.
fn checks() -> BTreeMap<&'static str, Check> {
    let mut m: BTreeMap<&'static str, Check> = BTreeMap::new();
    m.insert("-d", || {
        assert_eq!(ok("-d").verbosity, Verbosity::Debug);
        assert_eq!(ok("--quiet --debug").verbosity, Verbosity::Debug);
        assert_eq!(ok("--debug -q").verbosity, Verbosity::Quiet);
    });
    m.insert("--trace", || {
        assert_eq!(ok("--trace").verbosity, Verbosity::Trace);
        assert_eq!(ok("--trace -d").verbosity, Verbosity::Debug);
    });
    m.insert("-q", || {
        assert_eq!(ok("-q").verbosity, Verbosity::Quiet);
        assert_eq!(ok("-q --trace").verbosity, Verbosity::Trace);
    });
    m.insert("-f", || {
        assert!(ok("-f").foreground && ok("--foreground").foreground);
        assert!(!ok("").foreground);
    });
    m.insert("-e", || assert!(ok("-e").stderr && ok("--stderr").stderr));
    m.insert("-l", || {
        assert_eq!(ok("-l /tmp/l").log_file, Some(PathBuf::from("/tmp/l")));
        assert_eq!(
            ok("--log-file=/tmp/m").log_file,
            Some(PathBuf::from("/tmp/m"))
        );
    });
    m.insert("--log-size", || {
        assert_eq!(ok("").log_size, 1 << 20);
        assert_eq!(ok("--log-size 40960").log_size, 40960);
        assert_eq!(refused("--log-size 40959"), "Invalid --log-size: 40959");
    });
    m.insert("--runas", || {
        let r = ok("--runas 1000:100").runas.unwrap();
        assert_eq!((r.user.as_str(), r.group.as_deref()), ("1000", Some("100")));
        assert_eq!(ok("--runas nobody").runas.unwrap().user, "nobody");
    });
    m.insert("--no-sandbox", || {
        assert!(!ok("").no_sandbox, "the sandbox is the default");
        assert!(ok("--no-sandbox").no_sandbox);
    });
    m.insert("-P", || {
        assert_eq!(ok("-P /tmp/p").pid_file, Some(PathBuf::from("/tmp/p")));
        assert_eq!(ok("--pid /tmp/q").pid_file, Some(PathBuf::from("/tmp/q")));
    });
    m.insert("-p", || {
        assert_eq!(ok("--pcap /tmp/c").pcap, Some(PathBuf::from("/tmp/c")));
    });
    m.insert("-c", || {
        assert_eq!(ok("").conf_path, None);
        assert_eq!(ok("-c /tmp/k").conf_path, Some(PathBuf::from("/tmp/k")));
        assert_eq!(
            ok("--conf-path /tmp/k").conf_path,
            Some(PathBuf::from("/tmp/k"))
        );
    });
    m.insert("--version", || {
        assert!(matches!(parse("--version"), Err(CliError::Version(_))));
    });
    m.insert("-h", || {
        for a in ["-h", "--help"] {
            match parse(a) {
                Err(e @ CliError::Help(_)) => assert_eq!(e.exit_code(), 0),
                other => panic!("{other:?}"),
            }
        }
    });
    m.insert("-a", || {
        let c = config("-a 10.0.2.15/24 -a 2001:db8:5::15/56");
        let (c4, c6) = (c.ipv4.unwrap(), c.ipv6.unwrap());
        assert_eq!((c4.addr, c4.prefix_len), (v4("10.0.2.15"), 24));
        assert_eq!((c6.addr, c6.prefix_len), (v6("2001:db8:5::15"), 56));
        // Without a prefix: the address class (no host address matches).
        assert_eq!(config("-a 10.0.2.15").ipv4.unwrap().prefix_len, 8);
        assert_eq!(refused("-a 127.0.0.1"), "Invalid address: 127.0.0.1");
    });
    m.insert("-n", || {
        assert_eq!(config("-n 255.255.0.0").ipv4.unwrap().prefix_len, 16);
        assert_eq!(config("-a 10.0.2.15/24 -n 20").ipv4.unwrap().prefix_len, 20);
    });
    m.insert("-g", || {
        let c = config("-g 192.0.2.254 -g fe80::fe");
        assert_eq!(c.ipv4.unwrap().gateway, v4("192.0.2.254"));
        assert_eq!(c.ipv6.unwrap().gateway, v6("fe80::fe"));
    });
    m.insert("-M", || {
        assert_eq!(
            config("-M 02:00:00:00:00:09").our_mac,
            "02:00:00:00:00:09".parse().unwrap()
        );
    });
    m.insert("-i", || {
        assert_eq!(ok("-i eth1").interface.as_deref(), Some("eth1"));
    });
    m.insert("--outbound-if4", || {
        let c = config("--outbound-if4 eth1");
        assert_eq!(c.outbound.if_v4.unwrap().as_str(), "eth1");
        assert_eq!(c.outbound.if_v6, None);
        let (place, _) = c.outbound.bind_for(IpAddr::V4(v4("198.51.100.1")), 0);
        assert_eq!(place.device.unwrap().as_str(), "eth1");
    });
    m.insert("--outbound-if6", || {
        let c = config("--outbound-if6 eth2");
        assert_eq!(c.outbound.if_v6.unwrap().as_str(), "eth2");
        let (place, _) = c.outbound.bind_for(IpAddr::V6(v6("2001:db8:9::1")), 0);
        assert_eq!(place.device.unwrap().as_str(), "eth2");
    });
    m.insert("-o", || {
        let c = config("-o 192.0.2.2 --outbound 2001:db8::2");
        let (_, local) = c.outbound.bind_for(IpAddr::V4(v4("198.51.100.1")), 0);
        assert_eq!(local, Some("192.0.2.2:0".parse().unwrap()));
        let (_, local) = c.outbound.bind_for(IpAddr::V6(v6("2001:db8:9::1")), 0);
        assert_eq!(local, Some("[2001:db8::2]:0".parse().unwrap()));
    });
    m.insert("-m", || {
        assert_eq!(config("-m 1500").mtu, 1500);
        let c = config("-m 0");
        assert!(!c.announce_mtu);
        assert_eq!(config("--mtu 65521").mtu, 65521);
        assert_eq!(refused("-m 65522"), "Invalid MTU: 65522");
        assert_eq!(
            ok("-m 1000").warnings,
            vec!["MTU 1000 is too small for IPv6 (minimum 1280)".to_string()]
        );
    });
    m.insert("-4", || {
        let c = config("-4");
        assert!(c.ipv4.is_some() && c.ipv6.is_none());
        let c = config("-6 -4");
        assert!(c.ipv4.is_some() && c.ipv6.is_none(), "the last one wins");
    });
    m.insert("-6", || {
        let c = config("-6");
        assert!(c.ipv4.is_none() && c.ipv6.is_some());
        let c = config("-4 -6");
        assert!(c.ipv4.is_none() && c.ipv6.is_some(), "the last one wins");
    });
    m.insert("-D", || {
        let c = config("-D 198.51.100.7 -D 2001:db8::7");
        assert_eq!(c.ipv4.unwrap().dns, vec![v4("198.51.100.7")]);
        assert_eq!(c.ipv6.unwrap().dns, vec![v6("2001:db8::7")]);
        assert_eq!(ok("-D none").dns, DnsChoice::Disabled);
        // The host's loopback resolver: the gateway stands for it.
        let c = config("");
        assert_eq!(
            c.ipv4.as_ref().unwrap().dns,
            vec![v4("192.0.2.1"), v4("198.51.100.53")]
        );
        assert_eq!(c.mapping.dns_forward_v4, Some(v4("192.0.2.1")));
        assert_eq!(c.mapping.dns_host_v4, Some(v4("127.0.0.53")));
    });
    m.insert("-S", || {
        assert_eq!(config("-S a.test -S b.test").dns_search.len(), 2);
        assert_eq!(config("-S x.test").dns_search, vec!["x.test".to_string()]);
        assert_eq!(ok("-S none").search, SearchChoice::Disabled);
    });
    m.insert("--no-dhcp-dns", || {
        let c = config("--no-dhcp-dns");
        assert!(c.ipv4.unwrap().dns.is_empty());
        assert_eq!(
            c.mapping.dns_forward_v4,
            Some(v4("192.0.2.1")),
            "still forwarded"
        );
    });
    m.insert("--no-dhcp-search", || {
        assert!(config("--no-dhcp-search").dns_search.is_empty());
    });
    m.insert("--dns-forward", || {
        let c = config("--dns-forward 192.0.2.53");
        assert_eq!(c.ipv4.unwrap().dns, vec![v4("192.0.2.53")]);
        assert_eq!(c.mapping.dns_forward_v4, Some(v4("192.0.2.53")));
        // Ports 53 and 853 are mapped, others are not.
        use passt_engine::mapping::host_destination_port;
        let c = config("--dns-forward 192.0.2.53 --dns-host 127.0.0.1");
        for port in [53, 853] {
            assert_eq!(
                host_destination_port(&c, format!("192.0.2.53:{port}").parse().unwrap()),
                format!("127.0.0.1:{port}").parse().unwrap()
            );
        }
        assert_eq!(
            host_destination_port(&c, "192.0.2.53:80".parse().unwrap()),
            "192.0.2.53:80".parse().unwrap()
        );
    });
    m.insert("--dns-host", || {
        let c = config("--dns-forward 192.0.2.53 --dns-host 198.51.100.9");
        assert_eq!(c.mapping.dns_host_v4, Some(v4("198.51.100.9")));
    });
    m.insert("--map-host-loopback", || {
        let c = config("--map-host-loopback 192.0.2.77");
        assert_eq!(c.mapping.host_loopback_v4, Some(v4("192.0.2.77")));
        let c = config("--map-host-loopback 192.0.2.77 --map-host-loopback 192.0.2.78");
        assert_eq!(
            c.mapping.host_loopback_v4,
            Some(v4("192.0.2.78")),
            "last wins"
        );
        assert_eq!(
            config("--map-host-loopback none").mapping.host_loopback_v4,
            None
        );
    });
    m.insert("--map-guest-addr", || {
        let c = config("--map-guest-addr 192.0.2.88");
        assert_eq!(c.mapping.guest_addr_v4, Some(v4("192.0.2.88")));
        assert_eq!(config("--map-guest-addr none").mapping.guest_addr_v4, None);
    });
    m.insert("--no-map-gw", || {
        let c = config("--no-map-gw");
        assert_eq!(c.mapping.host_loopback_v4, None);
        assert_eq!(c.mapping.host_loopback_v6, None);
    });
    m.insert("--no-tcp", || assert!(!config("--no-tcp").services.tcp));
    m.insert("--no-udp", || assert!(!config("--no-udp").services.udp));
    m.insert("--no-icmp", || {
        let s = config("--no-icmp").services;
        assert!(!s.icmp && !s.ndp && !s.ra, "NDP goes with ICMP");
    });
    m.insert("--no-dhcp", || assert!(!config("--no-dhcp").services.dhcp));
    m.insert("--no-dhcpv6", || {
        assert!(!config("--no-dhcpv6").services.dhcpv6)
    });
    m.insert("--no-ndp", || {
        let s = config("--no-ndp").services;
        assert!(!s.ndp && !s.ra);
    });
    m.insert("--no-ra", || {
        let s = config("--no-ra").services;
        assert!(s.ndp && !s.ra);
    });
    m.insert("-t", || {
        let f =
            ok("-t 22:2222 -t 10.0.0.1%eth0/80 -t %lo/2222:22 -t 5000:192.0.2.5/6000").forwarding;
        assert_eq!(f.tcp.guest_port(22), Some(2222));
        assert!(
            f.tcp
                .rules
                .iter()
                .any(|r| r.ifname.as_deref() == Some("eth0")
                    && r.addr == Some(IpAddr::V4(v4("10.0.0.1"))))
        );
        assert!(
            f.tcp
                .rules
                .iter()
                .any(|r| r.ifname.as_deref() == Some("lo") && r.addr.is_none())
        );
        assert!(
            f.tcp
                .rules
                .iter()
                .any(|r| r.target == Some(IpAddr::V4(v4("192.0.2.5")))
                    && r.guest_port(5000) == Some(6000))
        );
        assert_eq!(f.udp.mode, ForwardMode::None, "UDP does not follow -t");
        assert_eq!(ok("-t none -t 22").forwarding.tcp.guest_port(22), Some(22));
        assert_eq!(
            ok("--tcp-ports 127.0.0.1/all").forwarding.tcp.mode,
            ForwardMode::All
        );
    });
    m.insert("-u", || {
        let f = ok("-u 53:5353 -u */123").forwarding;
        assert_eq!(f.udp.guest_port(53), Some(5353));
        assert_eq!(f.udp.guest_port(123), Some(123));
        assert_eq!(f.tcp.mode, ForwardMode::None);
    });
    m.insert("-H", || {
        assert_eq!(config("-H vm1").hostname.as_deref(), Some("vm1"));
    });
    m.insert("--fqdn", || {
        assert_eq!(
            config("--fqdn vm1.example.test").fqdn.as_deref(),
            Some("vm1.example.test")
        );
    });
    m.insert("-s", || {
        for a in ["-s /tmp/a", "--socket /tmp/a", "--socket-path /tmp/a"] {
            assert_eq!(ok(a).socket, Some(PathBuf::from("/tmp/a")), "{a}");
        }
    });
    m.insert("-F", || {
        let o = ok("-F 3");
        assert_eq!(o.fd, Some(3));
        assert!(o.one_off);
        assert_eq!(ok("--fd 0").fd, Some(0), "any descriptor");
    });
    m.insert("-1", || {
        assert!(ok("-1").one_off && ok("--one-off").one_off)
    });
    m.insert("--stats", || {
        assert_eq!(ok("--stats 10").stats, Some(10));
        assert_eq!(ok("").stats, None);
        assert_eq!(refused("--stats soon"), "Invalid --stats: soon");
    });
    m.insert("--freebind", || assert!(ok("--freebind").freebind));
    m.insert("--chroot-fallback", || {
        assert!(ok("--chroot-fallback").chroot_fallback);
    });
    m.insert("--print-capabilities", || {
        match parse("--print-capabilities") {
            Err(e @ CliError::Capabilities(_)) => {
                assert_eq!(e.exit_code(), 0);
                assert_eq!(e.to_string(), VHOST_USER_CAPABILITIES);
                assert!(VHOST_USER_CAPABILITIES.contains("\"type\": \"net\""));
            }
            other => panic!("{other:?}"),
        }
    });
    m.insert("--vhost-user", || not_supported_yet("--vhost-user"));
    m.insert("--repair-path", || {
        not_supported_yet("--repair-path /tmp/r")
    });
    m.insert("--migrate-exit", || not_supported_yet("--migrate-exit"));
    m.insert("--migrate-no-linger", || {
        not_supported_yet("--migrate-no-linger")
    });
    m
}

/// What the vhost-user rows say: accepted by the parser (no "unrecognized
/// option"), then refused as not supported yet (status 1).
fn not_supported_yet(args: &str) {
    let m = refused(args);
    assert!(
        m.ends_with("vhost-user is not supported yet (use the UNIX domain socket, -s)"),
        "{m}"
    );
    assert!(
        m.starts_with(args.split_whitespace().next().unwrap()),
        "{m}"
    );
}

#[test]
fn every_option_of_the_parser_has_a_row_in_docs_cli_md() {
    let rows = doc_rows();
    let documented: Vec<String> = rows.iter().flatten().cloned().collect();
    for long in cli::long_options() {
        let name = format!("--{long}");
        assert!(
            documented.contains(&name),
            "{name} has no row in docs/cli.md"
        );
    }
}

#[test]
fn every_row_of_docs_cli_md_is_an_option_the_parser_takes() {
    let longs = cli::long_options();
    for row in doc_rows() {
        for name in &row {
            if let Some(long) = name.strip_prefix("--") {
                assert!(
                    longs.iter().any(|l| l == long),
                    "{name}: not an option of passt"
                );
            } else {
                // Short options: accepted (possibly with a value).
                assert!(name.len() == 2 && name.starts_with('-'), "{name}");
                let help = cli::help_text();
                assert!(help.contains(&format!("{name},")), "{name} not in --help");
            }
        }
    }
}

#[test]
fn every_row_of_docs_cli_md_has_a_passing_check() {
    let checks = checks();
    let rows = doc_rows();
    assert_eq!(rows.len(), checks.len(), "rows: {rows:?}");
    for row in &rows {
        let key = row[0].as_str();
        let check = checks
            .get(key)
            .unwrap_or_else(|| panic!("no check for the docs/cli.md row of {key}"));
        check();
    }
    for key in checks.keys() {
        assert!(
            rows.iter().any(|r| r[0] == *key),
            "check for {key}, which has no row"
        );
    }
}
