use qemu_harness::{GuestScript, RunOutcome, RunSpec, run_guest};

fn go(gw: bool) {
    let mut spec = RunSpec::new(if gw { "smoke-gw" } else { "smoke" });
    spec.gateway_exists_on_host = gw;
    spec.timeout = std::time::Duration::from_secs(40);
    let out = run_guest(&spec, || {
        Ok((
            GuestScript::new()
                .check("dhcp", "udhcpc -i eth0 -n -q -t 5 -O mtu || exit 1")
                .check("ping", "ping -c 3 -W 2 10.0.2.2"),
            (),
        ))
    })
    .expect("run");
    if let RunOutcome::Ran(report, ()) = out {
        eprintln!("{}", report.summary());
    }
}
#[test]
fn smoke() {
    go(false)
}
#[test]
fn smoke_gw() {
    go(true)
}
