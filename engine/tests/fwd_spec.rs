//! Port-forwarding specifications: every example of passt(1) parses to the
//! rule set the man page describes (table-driven), and every malformed
//! specification gets its own precise error message (insta snapshot).

use std::net::IpAddr;

use passt_engine::fwd::{
    self, ForwardMode, ForwardRule, ForwardSpec, ForwardSpecBuilder, FwdError, PortRange, Program,
    SpecContext, SpecError,
};

fn rule(first: u16, last: u16, guest_first: u16) -> ForwardRule {
    ForwardRule {
        addr: None,
        ifname: None,
        host: PortRange::new(first, last),
        guest_first,
        target: None,
    }
}

fn to(target: &str, r: ForwardRule) -> ForwardRule {
    ForwardRule {
        target: Some(target.parse::<IpAddr>().unwrap()),
        ..r
    }
}

fn on(ifname: &str, r: ForwardRule) -> ForwardRule {
    ForwardRule {
        ifname: Some(ifname.to_string()),
        ..r
    }
}

fn at(addr: &str, ifname: Option<&str>, r: ForwardRule) -> ForwardRule {
    ForwardRule {
        addr: Some(addr.parse::<IpAddr>().unwrap()),
        ifname: ifname.map(str::to_string),
        ..r
    }
}

fn ports(rules: Vec<ForwardRule>) -> ForwardSpec {
    ForwardSpec {
        mode: ForwardMode::Ports,
        rules,
    }
}

/// The examples of the `-t` sections of passt(1) (identical for passt and
/// pasta), with the rule sets their descriptions spell out.
#[test]
fn fwd_man_page_examples() {
    let table: Vec<(&str, ForwardSpec)> = vec![
        // "Forward local port 22 to port 22 on the guest"
        ("22", ports(vec![rule(22, 22, 22)])),
        // "Forward local port 22 to port 23 on the guest"
        ("22:23", ports(vec![rule(22, 22, 23)])),
        // "Forward local ports 22 and 25 to ports 22 and 25 on the guest"
        ("22,25", ports(vec![rule(22, 22, 22), rule(25, 25, 25)])),
        // "Forward local ports between 22 and 80 to corresponding ports"
        ("22-80", ports(vec![rule(22, 80, 22)])),
        // "Forward local ports between 22 and 80 to ports between 32 and 90"
        ("22-80:32-90", ports(vec![rule(22, 80, 32)])),
        // "Forward local port 22, bound to 192.0.2.1, to port 22"
        (
            "192.0.2.1/22",
            ports(vec![at("192.0.2.1", None, rule(22, 22, 22))]),
        ),
        // "... bound to 192.0.2.1 and interface eth0, to port 22"
        (
            "192.0.2.1%eth0/22",
            ports(vec![at("192.0.2.1", Some("eth0"), rule(22, 22, 22))]),
        ),
        // "Forward local ports between 2000 and 5000, except for those
        // between 3000 and 3010"
        (
            "2000-5000,~3000-3010",
            ports(vec![rule(2000, 2999, 2000), rule(3011, 5000, 3011)]),
        ),
        // "For the local address 192.0.2.1, forward ports between 20 and 24
        // and between 26 and 30"
        (
            "192.0.2.1/20-30,~25",
            ports(vec![
                at("192.0.2.1", None, rule(20, 24, 20)),
                at("192.0.2.1", None, rule(26, 30, 26)),
            ]),
        ),
        // "Forward all ports to the guest, except for the range from 20000
        // to 20010" (all = all non-ephemeral ports)
        (
            "~20000-20010",
            ports(vec![
                rule(1, 19999, 1),
                rule(20011, 32767, 20011),
                rule(61000, 65535, 61000),
            ]),
        ),
        // "none: Don't forward any ports"
        ("none", ForwardSpec::none()),
        // "all: Forward all unbound, non-ephemeral ports"
        (
            "all",
            ForwardSpec {
                mode: ForwardMode::All,
                rules: vec![rule(1, 32767, 1), rule(61000, 65535, 61000)],
            },
        ),
    ];
    for program in [Program::Passt, Program::Pasta] {
        let cx = SpecContext::new(program);
        for (spec, expected) in &table {
            assert_eq!(
                &fwd::parse(spec, &cx).unwrap(),
                expected,
                "{spec} ({program:?})"
            );
        }
    }
    // The mapping the rules describe, port by port.
    let s = fwd::parse("22-80:32-90", &SpecContext::new(Program::Passt)).unwrap();
    assert_eq!(s.guest_port(22), Some(32));
    assert_eq!(s.guest_port(80), Some(90));
    assert_eq!(s.guest_port(81), None);
    let s = fwd::parse("2000-5000,~3000-3010", &SpecContext::new(Program::Passt)).unwrap();
    assert_eq!(s.guest_port(2999), Some(2999));
    assert_eq!(s.guest_port(3005), None);
    assert_eq!(s.guest_port(3011), Some(3011));
}

#[test]
fn fwd_auto_is_pasta_only_and_defaults() {
    let pasta = SpecContext::new(Program::Pasta);
    let passt = SpecContext::new(Program::Passt);
    assert_eq!(fwd::parse("auto", &pasta).unwrap().mode, ForwardMode::Auto);
    assert_eq!(fwd::parse("auto", &passt), Err(FwdError::AutoOnlyForPasta));
    assert_eq!(fwd::default_spec(Program::Passt), ForwardSpec::none());
    assert_eq!(fwd::default_spec(Program::Pasta).mode, ForwardMode::Auto);
    assert_eq!(ForwardSpecBuilder::new(passt).finish(), ForwardSpec::none());
    assert_eq!(
        ForwardSpecBuilder::new(pasta).finish().mode,
        ForwardMode::Auto
    );
}

#[test]
fn fwd_other_accepted_forms() {
    let cx = SpecContext::new(Program::Passt);
    let p = |s| fwd::parse(s, &cx).unwrap();
    // Leading zeros, degenerate ranges, the largest port, IPv6 addresses
    // (link-local with an interface), exclusions outside the ranges, two
    // host ports to one guest port (as upstream accepts).
    assert_eq!(p("022"), ports(vec![rule(22, 22, 22)]));
    assert_eq!(p("22-22:23-23"), ports(vec![rule(22, 22, 23)]));
    assert_eq!(p("65535"), ports(vec![rule(65535, 65535, 65535)]));
    assert_eq!(p("::1/22"), ports(vec![at("::1", None, rule(22, 22, 22))]));
    assert_eq!(
        p("fe80::1%lo/22"),
        ports(vec![at("fe80::1", Some("lo"), rule(22, 22, 22))])
    );
    assert_eq!(p("22,~25"), ports(vec![rule(22, 22, 22)]));
    assert_eq!(
        p("22:23,24:23"),
        ports(vec![rule(22, 22, 23), rule(24, 24, 23)])
    );
    assert_eq!(p("22-25,~22-25"), ports(vec![]));
    assert_eq!(
        p("1.2.3.4/~22"),
        ports(vec![
            at("1.2.3.4", None, rule(1, 21, 1)),
            at("1.2.3.4", None, rule(23, 32767, 23)),
            at("1.2.3.4", None, rule(61000, 65535, 61000)),
        ])
    );
    // A custom ephemeral range.
    let cx2 = SpecContext {
        program: Program::Passt,
        ephemeral: PortRange::new(1024, 65535),
    };
    assert_eq!(
        fwd::parse("all", &cx2).unwrap().rules,
        vec![rule(1, 1023, 1)]
    );
    // UDP follows TCP without port translation.
    let tcp = p("22:2222,80-81:8080-8081");
    assert_eq!(
        fwd::udp_from_tcp(&tcp),
        ports(vec![rule(22, 22, 22), rule(80, 81, 80)])
    );
}

#[test]
fn fwd_repeated_options_accumulate() {
    let cx = SpecContext::new(Program::Passt);
    let mut b = ForwardSpecBuilder::new(cx);
    b.add("22").unwrap();
    b.add("80:8080").unwrap();
    b.add("192.0.2.1/22").unwrap(); // same port, other bind address
    assert_eq!(
        b.add("20-30"),
        Err(FwdError::Overlapping {
            spec: "20-30".into(),
            port: 22
        })
    );
    // `none` adds nothing, wherever it comes.
    assert_eq!(b.add("none"), Ok(()));
    let s = b.finish();
    assert_eq!(
        s.rules,
        vec![
            rule(22, 22, 22),
            rule(80, 80, 8080),
            at("192.0.2.1", None, rule(22, 22, 22)),
        ]
    );
    // `-t none -t 22` is `-t 22` (as libvirt and scripts write it).
    let mut b = ForwardSpecBuilder::new(cx);
    b.add("none").unwrap();
    b.add("22").unwrap();
    b.add("none").unwrap();
    assert_eq!(b.finish(), ports(vec![rule(22, 22, 22)]));
    // `all` on two host addresses accumulates; `all` and lists do not mix.
    let mut b = ForwardSpecBuilder::new(cx);
    b.add("127.0.0.1/all").unwrap();
    b.add("::1/all").unwrap();
    assert_eq!(b.add("22"), Err(FwdError::PortsAfterMode));
    assert_eq!(b.finish().rules.len(), 4);
    let mut b = ForwardSpecBuilder::new(cx);
    b.add("all").unwrap();
    assert!(matches!(
        b.add("all"),
        Err(FwdError::Overlapping { port: 1, .. })
    ));
}

/// upstream's newer grammar: target addresses, `*`, `%IF/`, `ADDR/all`.
#[test]
fn fwd_target_addresses_and_interfaces() {
    let cx = SpecContext::new(Program::Passt);
    let p = |s| fwd::parse(s, &cx).unwrap();
    let all_ports = |r: fn(ForwardRule) -> ForwardRule| {
        vec![r(rule(1, 32767, 1)), r(rule(61000, 65535, 61000))]
    };
    // Host port 22 to port 22 of guest address 192.0.2.5.
    assert_eq!(
        p("22:192.0.2.5"),
        ports(vec![to("192.0.2.5", rule(22, 22, 22))])
    );
    // Host port 5000 to port 6000 of 192.0.2.5.
    assert_eq!(
        p("5000:192.0.2.5/6000"),
        ports(vec![to("192.0.2.5", rule(5000, 5000, 6000))])
    );
    assert_eq!(
        p("5000-5001:[2001:db8::5]/6000-6001"),
        ports(vec![to("2001:db8::5", rule(5000, 5001, 6000))])
    );
    assert_eq!(
        p("22:2001:db8::5"),
        ports(vec![to("2001:db8::5", rule(22, 22, 22))])
    );
    // A host address, and a target per item.
    assert_eq!(
        p("127.0.0.1/22:192.0.2.5,80:8080"),
        ports(vec![
            at("127.0.0.1", None, to("192.0.2.5", rule(22, 22, 22))),
            at("127.0.0.1", None, rule(80, 80, 8080)),
        ])
    );
    // `all` to a target address; `ADDR/all`.
    let s = p("all:192.0.2.5");
    assert_eq!(s.mode, ForwardMode::All);
    assert_eq!(s.rules, all_ports(|r| to("192.0.2.5", r)));
    let s = p("127.0.0.1/all");
    assert_eq!(s.mode, ForwardMode::All);
    assert_eq!(s.rules, all_ports(|r| at("127.0.0.1", None, r)));
    // `*` is every address; `%IF` every address on IF; `ADDR%IF`.
    assert_eq!(p("*/22"), ports(vec![rule(22, 22, 22)]));
    assert_eq!(p("%lo/22"), ports(vec![on("lo", rule(22, 22, 22))]));
    assert_eq!(
        p("*%lo/2222:22"),
        ports(vec![on("lo", rule(2222, 2222, 22))])
    );
    assert_eq!(
        p("10.0.0.1%eth0/22"),
        ports(vec![at("10.0.0.1", Some("eth0"), rule(22, 22, 22))])
    );
    // Target family must match the host address's.
    assert!(matches!(
        fwd::parse("::1/22:192.0.2.5", &cx),
        Err(FwdError::Invalid {
            reason: SpecError::FamilyMismatch { .. },
            ..
        })
    ));
    assert!(matches!(
        fwd::parse("22:[192.0.2.5]", &cx),
        Err(FwdError::Invalid {
            reason: SpecError::BadBrackets(_),
            ..
        })
    ));
}

/// Every malformed specification, with its own message.
#[test]
fn fwd_malformed_specs_messages() {
    let passt = SpecContext::new(Program::Passt);
    type Check = fn(&FwdError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::Empty,
                    ..
                }
            )
        }),
        ("22,,25", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::EmptyItem,
                    ..
                }
            )
        }),
        ("22,", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::EmptyItem,
                    ..
                }
            )
        }),
        ("22-", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::MissingPort(_),
                    ..
                }
            )
        }),
        ("-22", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::MissingPort(_),
                    ..
                }
            )
        }),
        ("22:", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::MissingPort(_),
                    ..
                }
            )
        }),
        (":22", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::MissingPort(_),
                    ..
                }
            )
        }),
        ("~", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::MissingPort(_),
                    ..
                }
            )
        }),
        ("1.2.3.4/", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::MissingPort(_),
                    ..
                }
            )
        }),
        ("abc", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::NotANumber(_),
                    ..
                }
            )
        }),
        ("22a", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::NotANumber(_),
                    ..
                }
            )
        }),
        ("0x16", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::NotANumber(_),
                    ..
                }
            )
        }),
        ("+22", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::NotANumber(_),
                    ..
                }
            )
        }),
        (" 22", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::NotANumber(_),
                    ..
                }
            )
        }),
        ("22:23:24", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::BadAddress(_),
                    ..
                }
            )
        }),
        ("0", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::PortZero,
                    ..
                }
            )
        }),
        ("22:0", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::PortZero,
                    ..
                }
            )
        }),
        ("0-5", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::PortZero,
                    ..
                }
            )
        }),
        ("65536", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::PortOutOfRange(_),
                    ..
                }
            )
        }),
        ("99999999999999999999", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::PortOutOfRange(_),
                    ..
                }
            )
        }),
        ("80-22", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::ReversedRange { .. },
                    ..
                }
            )
        }),
        ("~22-20", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::ReversedRange { .. },
                    ..
                }
            )
        }),
        ("22-80:32", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::TargetLengthMismatch { .. },
                    ..
                }
            )
        }),
        ("22-80:32-40", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::TargetLengthMismatch { .. },
                    ..
                }
            )
        }),
        ("22:23-24", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::TargetLengthMismatch { .. },
                    ..
                }
            )
        }),
        ("~22:23", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::ExcludedWithTarget(_),
                    ..
                }
            )
        }),
        ("/22", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::MissingAddress('/'),
                    ..
                }
            )
        }),
        ("%/22", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::EmptyInterface,
                    ..
                }
            )
        }),
        ("1.2.3.999/22", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::BadAddress(_),
                    ..
                }
            )
        }),
        ("[::1]/22", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::BadAddress(_),
                    ..
                }
            )
        }),
        ("x%eth0/22", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::BadAddress(_),
                    ..
                }
            )
        }),
        ("1.2.3.4%/22", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::EmptyInterface,
                    ..
                }
            )
        }),
        ("1.2.3.4%averyverylongifname/22", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::BadInterface(_),
                    ..
                }
            )
        }),
        ("1.2.3.4%eth:0/22", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::BadInterface(_),
                    ..
                }
            )
        }),
        ("22,1.2.3.4/25", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::AddressNotFirst,
                    ..
                }
            )
        }),
        ("1.2.3.4/22,~1.2.3.4/25", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::ExtraSlash,
                    ..
                }
            )
        }),
        ("1.2.3.4/22/23", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::ExtraSlash,
                    ..
                }
            )
        }),
        ("none,22", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::KeywordInList("none"),
                    ..
                }
            )
        }),
        ("22,all", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::KeywordInList("all"),
                    ..
                }
            )
        }),
        ("1.2.3.4/none", |e| {
            matches!(
                e,
                FwdError::Invalid {
                    reason: SpecError::KeywordWithAddress("none"),
                    ..
                }
            )
        }),
        ("22,22", |e| {
            matches!(e, FwdError::Overlapping { port: 22, .. })
        }),
        ("22-30,25", |e| {
            matches!(e, FwdError::Overlapping { port: 25, .. })
        }),
        ("~22,~20-30", |e| {
            matches!(e, FwdError::OverlappingExclusion { port: 22, .. })
        }),
        ("auto", |e| matches!(e, FwdError::AutoOnlyForPasta)),
    ];
    let mut report = String::new();
    let mut seen = std::collections::BTreeSet::new();
    for (spec, check) in cases {
        let err = fwd::parse(spec, &passt).expect_err(spec);
        assert!(check(&err), "{spec:?}: unexpected {err:?}");
        let msg = err.to_string();
        assert!(seen.insert(msg.clone()), "message not specific: {msg}");
        report.push_str(&format!("{spec:?} => {msg}\n"));
    }
    // Errors of repeated options.
    let mut b = ForwardSpecBuilder::new(passt);
    b.add("22").unwrap();
    for spec in ["22", "all"] {
        report.push_str(&format!(
            "-t 22 -t {spec:?} => {}\n",
            b.add(spec).unwrap_err()
        ));
    }
    let mut b = ForwardSpecBuilder::new(passt);
    b.add("all").unwrap();
    report.push_str(&format!(
        "-t all -t \"22\" => {}\n",
        b.add("22").unwrap_err()
    ));
    insta::assert_snapshot!(report);
}
