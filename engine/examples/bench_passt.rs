//! Throughput benchmark: our `passt` binary against a peer `passt` (by
//! default Debian's `/usr/bin/passt`), both measured in the same run.
//!
//! This program plays QEMU and the guest: it connects to each passt's UNIX
//! socket (QEMU stream protocol: 4-byte big-endian length, then the
//! Ethernet frame) and runs smoltcp as the guest's TCP/IP stack, statically
//! configured as 10.0.2.15/24 via 10.0.2.2. The guest opens TCP
//! connections to 10.0.2.2:PORT, which both implementations map to the
//! host's 127.0.0.1:PORT, where a thread of this program is a sink
//! (guest -> host, "upload") or a source (host -> guest, "download").
//! Payload bytes are checked on arrival (a period-251 pattern).
//!
//! Runs alternate between the implementations so that noise on a shared
//! machine hits both alike. Output: one line per measurement, then a table
//! of medians and the ratio ours / peer.
//!
//! It owns no engine code and must never be run as a test: it prints
//! figures, it does not assert speed.
//!
//! Usage: bench_passt --ours PATH [--peer PATH|--no-peer] [--mib N] [--runs N]
//! [--buf-kib N] (smoltcp's send and receive buffers, default 1024 KiB).
//! BENCH_NO_DELAYED_ACK=1 turns smoltcp's delayed ACK off.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const GUEST4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const GW4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const MTU: usize = 65520;
const PERIOD: usize = 251;
const MIB: usize = 1 << 20;
const TRANSFER_LIMIT: Duration = Duration::from_secs(300);

type Res<T> = Result<T, String>;

// ---------------------------------------------------------------------------
// The payload pattern
// ---------------------------------------------------------------------------

/// Byte `i` of every transfer is `i % 251`; `PATTERN[o..o + n]` is the
/// stream from any offset congruent to `o` for `n <= 64 KiB`.
fn pattern_table() -> Vec<u8> {
    (0..64 * 1024 + PERIOD)
        .map(|i| (i % PERIOD) as u8)
        .collect()
}

/// Checks `data`, which starts at stream offset `at`, against the pattern.
fn check(table: &[u8], mut at: usize, data: &[u8]) -> bool {
    data.chunks(64 * 1024).all(|c| {
        let o = at % PERIOD;
        at += c.len();
        c == &table[o..o + c.len()]
    })
}

// ---------------------------------------------------------------------------
// A passt process and the QEMU end of its socket
// ---------------------------------------------------------------------------

struct Passt {
    child: Child,
    dir: PathBuf,
}

impl Passt {
    fn start(bin: &Path, tag: &str) -> Res<Passt> {
        // World-writable: Debian's passt, started as root, drops to
        // `nobody` before it creates its socket and pid file.
        let dir = std::env::temp_dir().join(format!("bench-passt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{dir:?}: {e}"))?;
        std::fs::set_permissions(
            &dir,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o777),
        )
        .map_err(|e| format!("chmod {dir:?}: {e}"))?;
        let stderr = std::fs::File::create(dir.join("stderr")).map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .args(["-f", "-e", "-q", "-4", "-m", "65520", "--no-dhcp"])
            .args([
                "-a",
                "10.0.2.15",
                "-n",
                "24",
                "-g",
                "10.0.2.2",
                "-D",
                "10.0.2.3",
            ])
            .arg("-s")
            .arg(dir.join("s.sock"))
            .arg("-P")
            .arg(dir.join("pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {bin:?}: {e}"))?;
        let mut p = Passt { child, dir };
        let end = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(p.dir.join("pid")).is_ok_and(|s| s.ends_with('\n')) {
            if let Ok(Some(st)) = p.child.try_wait() {
                return Err(format!("{bin:?} exited ({st}): {}", p.stderr()));
            }
            if Instant::now() > end {
                return Err(format!("{bin:?} never wrote its pid file"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(p)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    fn connect(&self) -> Res<Qemu> {
        let s = UnixStream::connect(self.dir.join("s.sock")).map_err(|e| e.to_string())?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Qemu {
            s,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
        })
    }
}

impl Drop for Passt {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The QEMU end of the stream socket.
struct Qemu {
    s: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
}

impl Qemu {
    fn poll(&self, events: libc::c_short, ms: i32) -> libc::c_short {
        let mut p = libc::pollfd {
            fd: self.s.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: one pollfd on a live descriptor.
        unsafe { libc::poll(&mut p, 1, ms) };
        p.revents
    }

    /// Writes every queued frame, in one buffer; while passt cannot take
    /// more, keeps reading what it sends (so neither side blocks forever).
    fn flush(&mut self, tx: &mut VecDeque<Vec<u8>>) -> Res<()> {
        self.outbuf.clear();
        for f in tx.drain(..) {
            self.outbuf
                .extend_from_slice(&(f.len() as u32).to_be_bytes());
            self.outbuf.extend_from_slice(&f);
        }
        let mut at = 0;
        while at < self.outbuf.len() {
            match self.s.write(&self.outbuf[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.poll(libc::POLLOUT | libc::POLLIN, 10);
                    self.read_some()?;
                }
                Err(e) => return Err(format!("write to passt: {e}")),
            }
        }
        Ok(())
    }

    fn read_some(&mut self) -> Res<()> {
        let mut chunk = [0u8; 65536];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return Err("passt closed the socket".into()),
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(format!("read from passt: {e}")),
            }
        }
    }

    /// Waits up to `wait` for bytes, then moves whole frames to `rx`.
    fn recv(&mut self, wait: Duration, rx: &mut VecDeque<Vec<u8>>) -> Res<()> {
        if !wait.is_zero() {
            self.poll(libc::POLLIN, wait.as_millis().max(1) as i32);
        }
        self.read_some()?;
        let mut at = 0;
        while self.inbuf.len() - at >= 4 {
            let mut len = [0u8; 4];
            len.copy_from_slice(&self.inbuf[at..at + 4]);
            let len = u32::from_be_bytes(len) as usize;
            if self.inbuf.len() - at - 4 < len {
                break;
            }
            rx.push_back(self.inbuf[at + 4..at + 4 + len].to_vec());
            at += 4 + len;
        }
        self.inbuf.drain(..at);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// smoltcp as the guest
// ---------------------------------------------------------------------------

struct QueueDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

struct RxTok(Vec<u8>);
struct TxTok<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(RxTok, TxTok<'_>)> {
        let f = self.rx.pop_front()?;
        Some((RxTok(f), TxTok(&mut self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<TxTok<'_>> {
        Some(TxTok(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = MTU + 14;
        c
    }
}

struct Guest {
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    qemu: Qemu,
    start: Instant,
}

impl Guest {
    fn new(qemu: Qemu) -> Guest {
        let mut dev = QueueDevice {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
        };
        let mut cfg = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(GUEST_MAC)));
        cfg.random_seed = 0x5eed;
        let mut iface = Interface::new(cfg, &mut dev, smoltcp::time::Instant::from_micros(0));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(GUEST4.into(), 24));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(GW4);
        Guest {
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            qemu,
            start: Instant::now(),
        }
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    /// One round: smoltcp's output to passt, passt's frames to smoltcp.
    fn step(&mut self) -> Res<()> {
        let now = self.now();
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        self.qemu.flush(&mut self.dev.tx)?;
        let wait = self
            .iface
            .poll_delay(self.now(), &self.sockets)
            .map_or(Duration::from_millis(5), |d| {
                Duration::from_micros(d.total_micros())
            })
            .min(Duration::from_millis(5));
        self.qemu.recv(wait, &mut self.dev.rx)
    }

    fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }
}

// ---------------------------------------------------------------------------
// One transfer
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Dir {
    /// Guest -> host.
    Upload,
    /// Host -> guest.
    Download,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Upload => "guest->host",
            Dir::Download => "host->guest",
        }
    }
}

/// Moves `bytes` through passt in direction `dir`; returns the seconds
/// from the guest's connect() to the last byte checked at the receiver.
fn transfer(
    g: &mut Guest,
    port_and_buf: (u16, usize),
    dir: Dir,
    bytes: usize,
    table: &[u8],
) -> Res<f64> {
    let (local_port, sock_buf) = port_and_buf;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let host_table = table.to_vec();
    let host = std::thread::spawn(move || -> Res<usize> {
        let (mut s, _) = listener.accept().map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(TRANSFER_LIMIT))
            .map_err(|e| e.to_string())?;
        let mut n = 0;
        match dir {
            Dir::Upload => {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let k = s.read(&mut buf).map_err(|e| format!("sink: {e}"))?;
                    if k == 0 {
                        break;
                    }
                    if !check(&host_table, n, &buf[..k]) {
                        return Err(format!("sink: wrong bytes near offset {n}"));
                    }
                    n += k;
                }
            }
            Dir::Download => {
                while n < bytes {
                    let o = n % PERIOD;
                    let k = (bytes - n).min(64 * 1024);
                    s.write_all(&host_table[o..o + k])
                        .map_err(|e| format!("source: {e}"))?;
                    n += k;
                }
            }
        }
        Ok(n)
    });

    let h = g.sockets.add(tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; sock_buf]),
        tcp::SocketBuffer::new(vec![0; sock_buf]),
    ));
    if std::env::var_os("BENCH_NO_DELAYED_ACK").is_some() {
        g.tcp(h).set_ack_delay(None);
    }
    let t0 = Instant::now();
    let end = t0 + TRANSFER_LIMIT;
    let cx = g.iface.context();
    g.sockets
        .get_mut::<tcp::Socket>(h)
        .connect(cx, (IpAddr::V4(GW4), port), local_port)
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sent, mut got) = (0usize, 0usize);
    let mut bad = None;
    let elapsed = loop {
        g.step()?;
        let s = g.tcp(h);
        if dir == Dir::Upload {
            while sent < bytes && s.can_send() {
                let o = sent % PERIOD;
                let k = (bytes - sent).min(64 * 1024);
                let n = s.send_slice(&table[o..o + k]).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                sent += n;
            }
            if sent == bytes && s.may_send() {
                s.close();
            }
        } else {
            while s.can_recv() {
                let n = s
                    .recv(|b| {
                        if !check(table, got, b) {
                            bad = Some(got);
                        }
                        (b.len(), b.len())
                    })
                    .map_err(|e| e.to_string())?;
                got += n;
            }
            if let Some(at) = bad {
                return Err(format!("guest: wrong bytes near offset {at}"));
            }
            if got == bytes {
                break t0.elapsed();
            }
        }
        if dir == Dir::Upload && host.is_finished() {
            break t0.elapsed();
        }
        if !s.is_open() && dir == Dir::Download {
            return Err(format!("closed early after {got} bytes ({})", s.state()));
        }
        if Instant::now() > end {
            return Err(format!("timed out: sent {sent}, got {got}"));
        }
    };
    let host_bytes = host.join().map_err(|_| "host thread panicked")??;
    if host_bytes != bytes {
        return Err(format!("host moved {host_bytes} of {bytes} bytes"));
    }
    // Let the connection wind down, then drop the socket (abort if stuck).
    g.tcp(h).close();
    let end = Instant::now() + Duration::from_secs(2);
    while g.tcp(h).state() != tcp::State::Closed
        && g.tcp(h).state() != tcp::State::TimeWait
        && Instant::now() < end
    {
        g.step()?;
    }
    g.tcp(h).abort();
    g.step()?;
    g.sockets.remove(h);
    Ok(elapsed.as_secs_f64())
}

// ---------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------

struct Args {
    ours: PathBuf,
    peer: Option<PathBuf>,
    mib: usize,
    runs: usize,
    buf_kib: usize,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        ours: PathBuf::new(),
        peer: Some(PathBuf::from("/usr/bin/passt")),
        mib: 64,
        runs: 3,
        buf_kib: 1024,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--ours" => a.ours = PathBuf::from(val()?),
            "--peer" => a.peer = Some(PathBuf::from(val()?)),
            "--no-peer" => a.peer = None,
            "--mib" => a.mib = val()?.parse().map_err(|e| format!("--mib: {e}"))?,
            "--runs" => a.runs = val()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--buf-kib" => a.buf_kib = val()?.parse().map_err(|e| format!("--buf-kib: {e}"))?,
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.ours.as_os_str().is_empty() {
        return Err("--ours PATH is required".into());
    }
    Ok(a)
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_passt: {e}");
            eprintln!(
                "usage: bench_passt --ours PATH [--peer PATH|--no-peer] [--mib N] [--runs N] [--buf-kib N]"
            );
            std::process::exit(2);
        }
    };
    let table = pattern_table();
    let bytes = args.mib * MIB;

    let mut impls: Vec<(&str, PathBuf)> = vec![("ours", args.ours.clone())];
    if let Some(p) = &args.peer {
        impls.push(("peer", p.clone()));
    }
    // (name, process, guest, MiB/s per direction)
    let mut live = Vec::new();
    for (name, bin) in &impls {
        match Passt::start(bin, name).and_then(|p| {
            let q = p.connect()?;
            Ok((p, Guest::new(q)))
        }) {
            Ok((p, g)) => live.push((*name, bin.clone(), p, g, [Vec::new(), Vec::new()])),
            Err(e) => println!("{name}: cannot run {bin:?}: {e}"),
        }
    }
    let dirs = [Dir::Upload, Dir::Download];
    let mut port = 40000u16;
    for run in 1..=args.runs {
        for (name, _, _, g, rates) in live.iter_mut() {
            for (i, d) in dirs.iter().enumerate() {
                port += 1;
                match transfer(g, (port, args.buf_kib * 1024), *d, bytes, &table) {
                    Ok(secs) => {
                        let rate = args.mib as f64 / secs;
                        println!(
                            "run {run} {name:<4} {:<11} {} MiB in {secs:.3} s = {rate:.1} MiB/s",
                            d.name(),
                            args.mib
                        );
                        rates[i].push(rate);
                    }
                    Err(e) => println!("run {run} {name:<4} {:<11} FAILED: {e}", d.name()),
                }
            }
        }
    }

    println!();
    println!(
        "{:<6} {:<16} {:<12} {:>14} {:>12}",
        "impl", "binary", "direction", "MiB/s median", "ours/peer"
    );
    let mut medians: Vec<[Option<f64>; 2]> = Vec::new();
    for (_, _, _, _, rates) in live.iter_mut() {
        medians.push([median(&mut rates[0]), median(&mut rates[1])]);
    }
    for (k, (name, bin, proc_, _, rates)) in live.iter().enumerate() {
        for (i, d) in dirs.iter().enumerate() {
            let m = medians[k][i];
            let ratio = match (medians.first().and_then(|m| m[i]), medians.get(1)) {
                (Some(o), Some(p)) if *name == "peer" => p[i].map(|p| format!("{:.2}", o / p)),
                _ => None,
            };
            let shown = bin
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let shown = if bin.starts_with("/usr") {
                format!("{}", bin.display())
            } else {
                shown
            };
            println!(
                "{name:<6} {shown:<16} {:<12} {:>14} {:>12}   ({} of {} runs ok)",
                d.name(),
                m.map_or("-".into(), |m| format!("{m:.1}")),
                ratio.unwrap_or_else(|| "".into()),
                rates[i].len(),
                args.runs
            );
        }
        if !proc_.stderr().trim().is_empty() && std::env::var_os("BENCH_VERBOSE").is_some() {
            eprintln!("--- {name} stderr ---\n{}", proc_.stderr());
        }
    }
}
