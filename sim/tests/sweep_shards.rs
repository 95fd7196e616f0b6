//! Sweeps split across processes: N shards of `passt-sim sweep
//! --json-lines` run as separate processes and `passt-sim merge` adds up to
//! the unsharded run; a missing or cut shard makes the merge incomplete;
//! `--shard auto/N` takes K from Kubernetes' and Slurm's variables.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use passt_sim::shard::results::{Record, parse_line};

const SEEDS: &str = "1..10";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_passt-sim"));
    for v in [
        "JOB_COMPLETION_INDEX",
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_STEP",
        "SLURM_ARRAY_TASK_COUNT",
        "PASST_SIM_CHECK_DETERMINISM",
    ] {
        c.env_remove(v);
    }
    c
}

fn scenario() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/ping-v4.toml")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("passt-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// Starts one shard writing its JSON lines to `out`.
fn shard(spec: &str, out: &Path, env: &[(&str, &str)]) -> Command {
    let mut c = bin();
    c.arg("sweep")
        .arg(scenario())
        .args(["--seeds", SEEDS, "--shard", spec, "--json-lines"])
        .arg(out)
        .envs(env.iter().copied());
    c
}

fn merge(files: &[PathBuf]) -> Output {
    bin().arg("merge").args(files).output().expect("merge runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `(seed, verdict, trace hash)` of every seed line in a results file.
fn seed_lines(path: &Path) -> Vec<(u64, String, Option<String>)> {
    let body = std::fs::read_to_string(path).expect("results file");
    body.lines()
        .filter_map(|l| match parse_line(l).expect("valid line") {
            Record::Seed(s) => Some((s.seed, format!("{:?}", s.verdict), s.trace_hash)),
            _ => None,
        })
        .collect()
}

#[test]
fn three_shard_processes_merge_to_the_unsharded_run_and_a_missing_one_is_reported() {
    let whole = tmp("whole.jsonl");
    let files: Vec<PathBuf> = (1..=3).map(|k| tmp(&format!("shard{k}.jsonl"))).collect();
    let mut children: Vec<_> = (1..=3)
        .map(|k| {
            shard(&format!("{k}/3"), &files[k - 1], &[])
                .spawn()
                .expect("shard starts")
        })
        .collect();
    children.push(shard("1/1", &whole, &[]).spawn().expect("whole run starts"));
    for mut c in children {
        assert!(c.wait().expect("shard ends").success());
    }

    let mut sharded: Vec<_> = files.iter().flat_map(|f| seed_lines(f)).collect();
    sharded.sort();
    assert_eq!(
        sharded,
        seed_lines(&whole),
        "shards = unsharded, seed by seed"
    );
    assert_eq!(sharded.len(), 9);

    let all = merge(&files);
    assert_eq!(all.status.code(), Some(0), "{}", text(&all));
    assert!(
        text(&all).contains("9 expected, 9 run, 9 passed, 0 failed, 0 missing"),
        "{}",
        text(&all)
    );
    let one = merge(std::slice::from_ref(&whole));
    assert_eq!(one.status.code(), Some(0), "{}", text(&one));

    let partial = merge(&[files[0].clone(), files[2].clone()]);
    assert_eq!(partial.status.code(), Some(2), "{}", text(&partial));
    assert!(
        text(&partial).contains("shard 2/3 missing (3 seeds: 2, 5, 8)"),
        "{}",
        text(&partial)
    );

    // A shard killed mid-line: incomplete, its finished seeds still count.
    let cut = tmp("cut.jsonl");
    let body = std::fs::read(&files[1]).expect("shard 2");
    std::fs::write(&cut, &body[..body.len() - 30]).expect("write");
    let truncated = merge(&[files[0].clone(), cut, files[2].clone()]);
    assert_eq!(truncated.status.code(), Some(2), "{}", text(&truncated));
    assert!(
        text(&truncated).contains("has no footer"),
        "{}",
        text(&truncated)
    );
}

#[test]
fn kubernetes_and_slurm_indices_pick_the_shard() {
    let k8s = tmp("k8s.jsonl");
    let slurm = tmp("slurm.jsonl");
    let mut a = shard("auto/3", &k8s, &[("JOB_COMPLETION_INDEX", "1")])
        .spawn()
        .expect("k8s shard starts");
    let mut b = shard(
        "auto/3",
        &slurm,
        &[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ],
    )
    .spawn()
    .expect("slurm shard starts");
    assert!(a.wait().expect("k8s ends").success());
    assert!(b.wait().expect("slurm ends").success());
    let seeds = |p: &Path| seed_lines(p).iter().map(|s| s.0).collect::<Vec<_>>();
    assert_eq!(
        seeds(&k8s),
        vec![2, 5, 8],
        "completion index 1 is shard 2/3"
    );
    assert_eq!(seeds(&slurm), vec![3, 6, 9], "task 3 of 1-3 is shard 3/3");

    // Out of range or absent: a one-line error, status 2, nothing run.
    let o = shard(
        "auto/3",
        &tmp("bad.jsonl"),
        &[("JOB_COMPLETION_INDEX", "3")],
    )
    .output()
    .expect("runs");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("JOB_COMPLETION_INDEX=3 is outside 0..3"),
        "{}",
        text(&o)
    );
    let o = shard("auto/3", &tmp("none.jsonl"), &[])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("neither JOB_COMPLETION_INDEX"),
        "{}",
        text(&o)
    );
}

#[test]
fn merge_of_garbage_or_missing_files_is_a_one_line_error_with_status_2() {
    let junk = tmp("junk.jsonl");
    std::fs::write(&junk, b"\x00\xffnot json at all\n{\"record\":").expect("write");
    let o = merge(std::slice::from_ref(&junk));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("not a passt-sim results file"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("panicked"));
    let o = merge(&[tmp("does-not-exist.jsonl")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read"));
}

#[test]
fn json_lines_to_stdout_keep_the_summary_on_stderr() {
    let o = bin()
        .arg("sweep")
        .arg(scenario())
        .args(["--seeds", "1..=2", "--json-lines", "-"])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let kinds: Vec<String> = out
        .lines()
        .map(
            |l| match parse_line(l).expect("every stdout line is a record") {
                Record::Header(_) => "header".into(),
                Record::Seed(s) => format!("seed {}", s.seed),
                Record::Footer(_) => "footer".into(),
            },
        )
        .collect();
    assert_eq!(kinds, ["header", "seed 1", "seed 2", "footer"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("2 seeds, 2 passed"));
}
