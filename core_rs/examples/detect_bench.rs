//! Throughput of the built-in detector scanner (`mask::detect::scan`), all detectors on.
//!
//! `cargo run --release -p hoopgw-core --example detect_bench [MiB] [detector,...]`
//!
//! The corpus is generated: digit-heavy rows (ids, dates, amounts, times, codes, short words) of
//! which a given share carries one PII value (card, SSN, IBAN, email, phone, routing number, IP,
//! AWS key, JWT, password assignment). Prints MB/s (10^6 bytes per second) per PII density, for
//! three ways of calling: 64 KiB buffers (streams, COPY), one row per call, one field per call
//! (DataRow values).

use std::time::Instant;

// The scanner is compiled straight into this example so that the benchmark does not depend on
// how the library exposes the module.
#[allow(dead_code)]
#[path = "../src/mask/detect/mod.rs"]
mod detect;

use detect::{scan, Builtin, Enabled, Found};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        items.get(i).copied().unwrap_or("")
    }
}

const WORDS: &[&str] =
    &["ACME", "Globex", "Initech", "ok", "shipped", "pending", "EUR", "USD", "north", "B2B"];

const PII: &[&str] = &[
    "4111 1111 1111 1111",
    "5555555555554444",
    "123-45-6789",
    "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432",
    "jane.doe@example.com",
    "+1 (415) 555-2671",
    "415-555-2671",
    "021000021",
    "10.20.30.40",
    "AKIAIOSFODNN7EXAMPLE",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "password=hunter2",
];

/// One row: `id|date|amount|word number|time|qty|code|` plus, with probability `pii`, a PII field.
fn row(rng: &mut XorShift, pii: f64, out: &mut String) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        "{}|2024-{:02}-{:02}|{}.{:02}|{} {}|{:02}:{:02}:{:02}|{}|{}-{}|",
        rng.below(10_000_000),
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(100_000),
        rng.below(100),
        rng.pick(WORDS),
        rng.below(10_000),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(1000),
        rng.pick(WORDS),
        rng.below(1_000_000),
    );
    if (rng.below(1_000_000) as f64) < pii * 1_000_000.0 {
        out.push_str(rng.pick(PII));
        out.push('|');
    }
    out.push('\n');
}

fn corpus(bytes: usize, pii: f64, seed: u64) -> Vec<u8> {
    let mut rng = XorShift(seed);
    let mut s = String::with_capacity(bytes + 256);
    while s.len() < bytes {
        row(&mut rng, pii, &mut s);
    }
    s.into_bytes()
}

/// CPU time of this thread in seconds (Linux), to see through a busy machine; `None` elsewhere.
fn thread_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// Best of several runs, one scan per piece: MB/s by wall clock, MB/s by CPU time (when known),
/// matches per run.
fn measure(pieces: &[&[u8]], enabled: Enabled) -> (f64, Option<f64>, usize) {
    let bytes: usize = pieces.iter().map(|p| p.len()).sum();
    let mut out: Vec<Found> = Vec::with_capacity(1 << 16);
    let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
    let mut found = 0;
    for _ in 0..7 {
        found = 0;
        let c = thread_cpu_secs();
        let t = Instant::now();
        for piece in pieces {
            out.clear();
            scan(piece, enabled, &mut out);
            found += out.len();
        }
        wall = wall.min(t.elapsed().as_secs_f64());
        if let (Some(c0), Some(c1)) = (c, thread_cpu_secs()) {
            cpu = cpu.min(c1 - c0);
        }
    }
    let mbs = |secs: f64| bytes as f64 / secs / 1e6;
    (mbs(wall), cpu.is_finite().then(|| mbs(cpu)), found)
}

fn main() {
    let mib: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(32);
    let size = mib << 20;
    let (enabled, which) = match std::env::args().nth(2) {
        Some(list) => {
            let set = list.split(',').filter_map(Builtin::from_name).fold(Enabled::default(), Enabled::with);
            (set, list)
        }
        None => (Enabled::all(), "all detectors".to_string()),
    };
    println!("detect::scan, {which}, {mib} MiB per corpus, best of 7");
    println!(
        "{:>8}  {:>8}  {:>13}  {:>13}  {:>13}   (MB/s by wall clock; by CPU time in parentheses)",
        "density", "matches", "64 KiB scans", "row scans", "field scans"
    );
    let show = |(wall, cpu, _): (f64, Option<f64>, usize)| match cpu {
        Some(cpu) => format!("{wall:>5.0} ({cpu:>4.0})"),
        None => format!("{wall:>5.0}       "),
    };
    for (name, pii) in [("0%", 0.0), ("1%", 0.01), ("5%", 0.05), ("50%", 0.5)] {
        let data = corpus(size, pii, 0x1234_5678_9abc_def1);
        let blocks: Vec<&[u8]> = data.chunks(64 << 10).collect();
        let rows: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        let fields: Vec<&[u8]> = data.split(|&b| b == b'|' || b == b'\n').collect();
        let big = measure(&blocks, enabled);
        let found = big.2;
        println!(
            "{name:>8}  {found:>8}  {}  {}  {}",
            show(big),
            show(measure(&rows, enabled)),
            show(measure(&fields, enabled))
        );
    }
    let sample = corpus(400, 0.5, 7);
    println!("\nsample rows:\n{}", String::from_utf8_lossy(&sample));
}
