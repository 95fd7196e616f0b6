//! `passt-sim replay --html FILE`: the page holds one time–sequence graph
//! per TCP flow and direction with data, loads nothing from outside, is
//! deterministic, leaves the text report alone, and renders in headless
//! Chromium (Debian's `chromium`; without it that test says so loudly on
//! stderr and returns).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_passt-sim"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("passt-replay-html-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// A capture of a lossy TCP echo (retransmissions both ways), made by the
/// simulator.
fn lossy_capture(name: &str) -> PathBuf {
    let out = tmp(&format!("{name}.pcap"));
    let sc = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/tcp-echo-lossy.toml");
    let st = bin()
        .arg("run")
        .arg(&sc)
        .arg("--pcap")
        .arg(&out)
        .output()
        .expect("passt-sim runs");
    assert!(st.status.success(), "{st:?}");
    out
}

/// Runs `replay TRACE extra...`; returns stdout.
fn replay(trace: &Path, extra: &[&str]) -> String {
    let out = bin()
        .arg("replay")
        .arg(trace)
        .args(extra)
        .output()
        .expect("passt-sim runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("utf-8 report")
}

fn html_of(trace: &Path, name: &str) -> (String, String) {
    let page = tmp(name);
    let report = replay(trace, &["--html", page.to_str().expect("utf-8")]);
    (
        std::fs::read_to_string(&page).expect("page written"),
        report,
    )
}

#[test]
fn the_page_has_a_graph_per_tcp_direction_and_loads_nothing_from_outside() {
    let trace = lossy_capture("lossy");
    let (page, report) = html_of(&trace, "lossy.html");
    // One TCP flow with data both ways: two graphs.
    assert_eq!(page.matches("<svg").count(), 2, "{page}");
    assert!(page.contains("retransmits c/s"));
    // Retransmissions are marked (the capture has some each way).
    assert!(report.contains("retransmits c/s"));
    for outside in ["<script", "src=", "href=", "url(", "@import", "<link"] {
        assert!(!page.contains(outside), "the page holds `{outside}`");
    }
    // The text report is the same with and without --html.
    assert_eq!(report, replay(&trace, &[]));
    // And the page is deterministic.
    let (again, _) = html_of(&trace, "lossy-again.html");
    assert_eq!(page, again);
}

#[test]
fn a_flow_that_is_not_tcp_gets_its_table_without_a_graph() {
    let trace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/replay/sim-ping-v6.pcap");
    let (page, _) = html_of(&trace, "ping.html");
    assert_eq!(page.matches("<svg").count(), 0);
    assert!(page.contains("no graph: not a TCP flow"), "{page}");
    assert!(page.contains("answered"), "{page}");
}

/// Debian's `chromium`, or `$CHROMIUM`.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `page` with `args`, bounded to 120 s; returns
/// its stdout.
fn run_chromium(chromium: &Path, page: &Path, args: &[&str]) -> Vec<u8> {
    let profile = tmp(&format!(
        "chromium-profile-{}",
        args.first().copied().unwrap_or("")
    ));
    let out_file = tmp("chromium-stdout");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1300,1300",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(std::fs::File::create(&out_file).expect("stdout file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(st) = child.try_wait().expect("wait for chromium") {
            assert!(st.success(), "chromium: {st}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::read(&out_file).expect("chromium output")
}

/// The number of coordinate pairs in a `points="..."` attribute.
fn point_count(attr: &str) -> usize {
    attr.split_whitespace().filter(|p| p.contains(',')).count()
}

#[test]
fn the_graphs_render_in_headless_chromium() {
    let Some(chromium) = chromium() else {
        // Straight to the process's stderr, past the test harness's
        // capture, so the skip shows in every run's output.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED the_graphs_render_in_headless_chromium: no `chromium` on PATH \
             (apt-get install chromium; ./dev installs it, CI runs this test) ***\n"
        );
        return;
    };
    let trace = lossy_capture("render");
    let page = tmp("render.html");
    replay(&trace, &["--html", page.to_str().expect("utf-8")]);

    // The DOM as the browser built it: two SVG graphs, with lines that
    // have points.
    let dom = String::from_utf8(run_chromium(&chromium, &page, &["--dump-dom"])).expect("utf-8");
    assert_eq!(dom.matches("<svg").count(), 2, "{dom}");
    let lines: Vec<usize> = dom
        .split("<polyline")
        .skip(1)
        .filter_map(|p| {
            let at = p.find("points=\"")? + 8;
            let end = p[at..].find('"')?;
            Some(point_count(&p[at..at + end]))
        })
        .collect();
    let drawn = lines.iter().filter(|n| **n >= 2).count();
    assert!(
        drawn > 100,
        "expected data segments, ACK and window lines, got {drawn} polylines with points"
    );
    assert!(
        lines.iter().any(|n| *n > 50),
        "an ACK line is a long polyline"
    );

    // A screenshot is far from blank: compared with the same page with
    // the graphs replaced by empty boxes of their size, it holds much more
    // (PNG compresses a blank area to almost nothing; the text of the page
    // is in both).
    let shot = tmp("render.png");
    run_chromium(
        &chromium,
        &page,
        &[&format!("--screenshot={}", shot.display())],
    );
    let html = std::fs::read_to_string(&page).expect("page");
    let mut blanked = String::new();
    let mut rest = html.as_str();
    while let Some(a) = rest.find("<svg") {
        blanked.push_str(&rest[..a]);
        let b = rest[a..].find("</svg>").expect("closed svg") + a + 6;
        blanked.push_str("<div style=\"width:760px;height:440px\"></div>");
        rest = &rest[b..];
    }
    blanked.push_str(rest);
    let blank_page = tmp("blank.html");
    std::fs::write(&blank_page, blanked).expect("write");
    let blank_shot = tmp("blank.png");
    run_chromium(
        &chromium,
        &blank_page,
        &[&format!("--screenshot={}", blank_shot.display())],
    );
    let (with, without) = (
        std::fs::metadata(&shot).expect("screenshot").len(),
        std::fs::metadata(&blank_shot).expect("screenshot").len(),
    );
    println!("screenshot {with} bytes with graphs, {without} without");
    assert!(
        with > without + 25_000,
        "the graphs add little to the screenshot: {with} bytes with, {without} without"
    );
}
