//! `pesto`: shows and changes the forwarding rules of a running passt or
//! pasta through its control socket (`-c PATH`), as upstream's pesto(1).
//!
//! ```text
//! pesto [-d] [-s] [-A|-D] [-C PIF] [-t|-u|-T|-U SPEC]... PATH
//! ```
//!
//! Specifiers follow the `-t` grammar and are checked here before anything
//! is sent. Without `-A`/`-D`, the specifiers of a pif (`host`: `-t`/`-u`;
//! `splice`: `-T`/`-U`) replace that pif's rules; `-A` adds the ones that
//! follow, `-D` deletes them. The request is applied whole or not at all;
//! the reply's rules are printed. The protocol is in `docs/pesto.md`.
//!
//! Exit status: 0 done, 1 refused by the instance or unreachable, 2 bad
//! command line.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use passt_engine::control::{self, Framing, HEADER_LEN, RequestOp};
use passt_engine::fwd::{self, Program, SpecContext};

const USAGE: &str = "Usage: pesto [OPTION]... PATH

Show and change the port forwarding of a running passt or pasta
through its control socket PATH (its -c option).

  -d, --debug         be verbose
  -h, --help          show this help and exit
  -s, --show          show the rules before and after the changes
  -A, --add           add the specifiers that follow
  -D, --delete        delete the specifiers that follow
  -C, --clear PIF     delete every rule of PIF: host (-t/-u) or splice (-T/-U)
  -t, --tcp-ports SPEC     TCP, host to guest
  -u, --udp-ports SPEC     UDP, host to guest
  -T, --tcp-ns SPEC        TCP, namespace to host (pasta)
  -U, --udp-ns SPEC        UDP, namespace to host (pasta)

Without -A or -D, the specifiers given for a pif replace its rules.
";

/// How long to wait for the instance's reply.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Replace,
    Add,
    Delete,
}

#[derive(Debug)]
struct Args {
    debug: bool,
    show: bool,
    ops: Vec<RequestOp>,
    path: PathBuf,
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("pesto: {msg}");
    eprintln!("Try 'pesto --help' for more information.");
    ExitCode::from(2)
}

/// The pif a forwarding option belongs to.
fn pif_of(option: char) -> &'static str {
    if option.is_ascii_lowercase() {
        "host"
    } else {
        "splice"
    }
}

fn parse_args(argv: &[String]) -> Result<Option<Args>, String> {
    let cx = SpecContext::new(Program::Pasta);
    let mut mode = Mode::Replace;
    let mut debug = false;
    let mut show = false;
    let mut ops = Vec::new();
    let mut cleared: BTreeSet<&'static str> = BTreeSet::new();
    let mut path = None;
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("option '{name}' needs {what}")),
            }
        };
        let option = match name {
            "-h" | "--help" => return Ok(None),
            "-d" | "--debug" => {
                debug = true;
                continue;
            }
            "-s" | "--show" => {
                show = true;
                continue;
            }
            "-A" | "--add" => {
                mode = Mode::Add;
                continue;
            }
            "-D" | "--delete" => {
                mode = Mode::Delete;
                continue;
            }
            "-C" | "--clear" => {
                let pif = value("a pif")?.to_ascii_lowercase();
                if pif != "host" && pif != "splice" {
                    return Err(format!("unknown pif '{pif}' (host or splice)"));
                }
                ops.push(RequestOp::Clear { pif });
                continue;
            }
            "-t" | "--tcp-ports" => 't',
            "-u" | "--udp-ports" => 'u',
            "-T" | "--tcp-ns" => 'T',
            "-U" | "--udp-ns" => 'U',
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(format!("unknown option '{s}'"));
            }
            _ => {
                if path.is_some() {
                    return Err(format!("unexpected argument '{arg}'"));
                }
                path = Some(PathBuf::from(arg));
                continue;
            }
        };
        let spec = value("a port specifier")?;
        if spec.is_empty() || spec.contains(char::is_whitespace) {
            return Err(format!("Invalid port specifier '{spec}'"));
        }
        fwd::parse(&spec, &cx).map_err(|e| e.to_string())?;
        match mode {
            Mode::Replace => {
                let pif = pif_of(option);
                if cleared.insert(pif) {
                    ops.push(RequestOp::Clear { pif: pif.into() });
                }
                ops.push(RequestOp::Add { option, spec });
            }
            Mode::Add => ops.push(RequestOp::Add { option, spec }),
            Mode::Delete => ops.push(RequestOp::Delete { option, spec }),
        }
    }
    let path = path.ok_or("missing PATH of the control socket")?;
    Ok(Some(Args {
        debug,
        show,
        ops,
        path,
    }))
}

/// Sends one request and returns the reply's outcome.
fn exchange(path: &PathBuf, ops: &[RequestOp], debug: bool) -> Result<Vec<String>, String> {
    let text = control::format_request(ops);
    if debug {
        eprintln!("pesto: request:\n{text}");
    }
    let wire = control::encode(&text);
    if wire.len() - HEADER_LEN < text.len() {
        return Err("request too long".into());
    }
    let mut s = UnixStream::connect(path)
        .map_err(|e| format!("Failed to connect to {}: {e}", path.display()))?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(&wire)
        .map_err(|e| format!("Failed to send the request: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let len = loop {
        match control::decode(&buf).map_err(|e| e.to_string())? {
            Framing::Complete(len) => break len,
            Framing::Incomplete => {}
        }
        let n = s
            .read(&mut chunk)
            .map_err(|e| format!("Failed to read the reply: {e}"))?;
        if n == 0 {
            return Err("the instance closed the connection without a reply".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    control::parse_reply(&buf[HEADER_LEN..HEADER_LEN + len]).map_err(|e| e.to_string())?
}

fn print(title: Option<&str>, lines: &[String]) {
    if let Some(t) = title {
        println!("{t}");
    }
    for l in lines {
        println!("{l}");
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => return usage_error(&msg),
    };
    let run = || -> Result<(), String> {
        if args.ops.is_empty() {
            print(None, &exchange(&args.path, &[RequestOp::Show], args.debug)?);
            return Ok(());
        }
        if args.show {
            let before = exchange(&args.path, &[RequestOp::Show], args.debug)?;
            print(Some("Before:"), &before);
        }
        let after = exchange(&args.path, &args.ops, args.debug)?;
        if args.show {
            print(Some("After:"), &after);
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("pesto: {msg}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Option<Args>, String> {
        parse_args(&s.split(' ').map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn specifiers_without_add_or_delete_replace_their_pif() {
        let a = args("-t 22 -u 53 -T 80 /tmp/s").unwrap().unwrap();
        assert_eq!(
            a.ops,
            vec![
                RequestOp::Clear { pif: "host".into() },
                RequestOp::Add {
                    option: 't',
                    spec: "22".into()
                },
                RequestOp::Add {
                    option: 'u',
                    spec: "53".into()
                },
                RequestOp::Clear {
                    pif: "splice".into()
                },
                RequestOp::Add {
                    option: 'T',
                    spec: "80".into()
                },
            ]
        );
    }

    #[test]
    fn add_and_delete_apply_to_the_specifiers_that_follow() {
        let a = args("-A -t 8080:80 -D -t 22 -C host /tmp/s")
            .unwrap()
            .unwrap();
        assert_eq!(
            a.ops,
            vec![
                RequestOp::Add {
                    option: 't',
                    spec: "8080:80".into()
                },
                RequestOp::Delete {
                    option: 't',
                    spec: "22".into()
                },
                RequestOp::Clear { pif: "host".into() },
            ]
        );
    }

    #[test]
    fn bad_command_lines_are_clean_errors() {
        assert!(
            args("-t 99999 /tmp/s")
                .unwrap_err()
                .contains("Invalid port specifier")
        );
        assert!(args("-t 22").unwrap_err().contains("missing PATH"));
        assert!(
            args("-C nowhere /tmp/s")
                .unwrap_err()
                .contains("unknown pif")
        );
        assert!(args("-x /tmp/s").unwrap_err().contains("unknown option"));
        assert!(args("/tmp/s -t").unwrap_err().contains("needs"));
        assert!(args("-h").unwrap().is_none());
    }
}
