//! Loader throughput: 1,000,000 generated rows (80% valid international numbers in assorted
//! spellings, 10% national form with a default region, 5% duplicates, 5% invalid), measured as
//! (a) CSV parse only and (b) parse + validation + dedupe into a counting sink, on all cores.
//!
//! `cargo run --release -p herald-benches --bin loader [-- ROWS]`
//!
//! `… --bin loader -- --stream ROWS` instead streams generated rows that never exist as a
//! file (default 10,000,000) and reports the process's peak memory: flat apart from the
//! dedupe table.

#![allow(clippy::print_stdout)]

use std::time::Instant;

/// The same allocator as the `herald` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use herald_benches::{Rng, peak_rss_mib};
use herald_core::{PhoneE164, Recipient};
use herald_loader::{
    LoadOptions, Normalizer, RecipientSink, Reject, SinkError, count_records, load,
};

/// Counts what it is given and keeps nothing.
#[derive(Default)]
struct Counting {
    accepted: u64,
    rejects: u64,
}

impl RecipientSink for Counting {
    fn accept(&mut self, recipients: &[Recipient]) -> Result<Vec<bool>, SinkError> {
        self.accepted += recipients.len() as u64;
        Ok(vec![true; recipients.len()])
    }
    fn reject(&mut self, rejects: &[Reject]) -> Result<(), SinkError> {
        self.rejects += rejects.len() as u64;
        Ok(())
    }
}

/// A random valid international number, in one of several spellings.
fn international(rng: &mut Rng, n: &Normalizer) -> (PhoneE164, String) {
    loop {
        let (cc, len, lead) = match rng.below(6) {
            0 => ("44", 10, "7"),
            1 => ("49", 11, "15"),
            2 => ("55", 11, "119"),
            3 => ("91", 10, "9"),
            4 => ("234", 10, "80"),
            _ => ("1", 10, "415"),
        };
        let mut digits = format!("{cc}{lead}");
        while digits.len() < cc.len() + len {
            digits.push(char::from(b'0' + rng.below(10) as u8));
        }
        let Ok(p) = n.normalize(&digits) else {
            continue;
        };
        let spelled = match rng.below(4) {
            0 => format!("+{digits}"),
            1 => digits.clone(),
            2 => format!(
                "+{cc} {} {}",
                &digits[cc.len()..cc.len() + 4],
                &digits[cc.len() + 4..]
            ),
            _ => format!("00{cc}-{}", &digits[cc.len()..]),
        };
        return (p, spelled);
    }
}

fn national_us(rng: &mut Rng, n: &Normalizer) -> String {
    loop {
        let s = format!(
            "({}) {}-{:04}",
            201 + rng.below(700),
            200 + rng.below(800),
            rng.below(10_000)
        );
        if n.normalize(&s).is_ok() {
            return s;
        }
    }
}

fn generate(rows: usize) -> (Vec<u8>, usize) {
    let mut rng = Rng::new(0x5eed);
    let us = Normalizer::new(Some("US")).expect("US is a region");
    let mut out = String::with_capacity(rows * 40);
    out.push_str("phone,first_name,order\n");
    let mut lines: Vec<String> = Vec::with_capacity(rows);
    let mut expected_valid = 0;
    for i in 0..rows {
        let roll = rng.below(100);
        let phone = if roll < 80 {
            expected_valid += 1;
            international(&mut rng, &us).1
        } else if roll < 90 {
            expected_valid += 1;
            national_us(&mut rng, &us)
        } else if roll < 95 && !lines.is_empty() {
            // A duplicate of an earlier row's number.
            let earlier = &lines[rng.below(lines.len() as u64) as usize];
            earlier.split(',').next().unwrap_or_default().to_owned()
        } else {
            match rng.below(4) {
                0 => "4.47912E+11".to_owned(),
                1 => format!("+44 79{}O", rng.below(1_000_000)),
                2 => format!("+999 {}", rng.below(10_000_000)),
                _ => "12345".to_owned(),
            }
        };
        lines.push(format!("{phone},Name{i},{}\n", 100_000 + i));
    }
    for l in &lines {
        out.push_str(l);
    }
    (out.into_bytes(), expected_valid)
}

/// An endless-looking CSV produced on the fly: `rows` distinct UK mobile numbers.
struct Streamed {
    next: u64,
    rows: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl std::io::Read for Streamed {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            if self.next == 0 {
                self.buf.extend_from_slice(b"phone,first_name,order\n");
            }
            while self.next < self.rows && self.buf.len() < 64 * 1024 {
                use std::io::Write as _;
                let n = self.next;
                let _ = writeln!(self.buf, "+4479{:08},Name{n},{n}", 10_000_000 + n);
                self.next += 1;
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn stream(rows: u64) {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let input = Streamed {
        next: 0,
        rows,
        buf: Vec::new(),
        pos: 0,
    };
    let opts = LoadOptions {
        variables: Some(vec!["first_name".into(), "order".into()]),
        threads,
        ..LoadOptions::default()
    };
    let mut sink = Counting::default();
    let t = Instant::now();
    let report = load(input, &opts, &mut sink).expect("loads");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "streamed {rows} rows ({:.0} MiB of CSV that never existed as a whole) in {secs:.1} s: {:.0} rows/s, {} accepted",
        report.bytes_read as f64 / 1048576.0,
        rows as f64 / secs,
        report.summary.accepted
    );
    println!(
        "dedupe table: {:.0} MiB = {:.1} bytes per unique number",
        report.dedupe_table_bytes as f64 / 1048576.0,
        report.dedupe_table_bytes as f64 / report.summary.accepted.max(1) as f64
    );
    if let Some(mib) = peak_rss_mib() {
        println!("peak RSS of the whole process: {mib:.0} MiB");
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("--stream") {
        let rows = args
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or(10_000_000);
        stream(rows);
        return;
    }
    let rows: usize = first.and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    // Generating is slow (it validates every number it writes): reuse an earlier run's file.
    let cache = std::env::temp_dir().join(format!("herald-loader-bench-{rows}.csv"));
    let (csv, expected_valid) = match std::fs::read(&cache) {
        Ok(csv) => (csv, 0),
        Err(_) => {
            println!("generating {rows} rows…");
            let (csv, valid) = generate(rows);
            let _ = std::fs::write(&cache, &csv);
            (csv, valid)
        }
    };
    println!(
        "input: {:.1} MiB, {threads} cores",
        csv.len() as f64 / 1048576.0
    );

    const RUNS: usize = 5;
    let mut parse_times = Vec::new();
    let mut load_times = Vec::new();
    let mut last = None;
    for _ in 0..RUNS {
        let t = Instant::now();
        let n = count_records(&csv[..]).expect("parses");
        parse_times.push(t.elapsed().as_secs_f64());
        assert_eq!(n as usize, rows);

        let mut sink = Counting::default();
        let opts = LoadOptions {
            default_region: Some("US".into()),
            variables: Some(vec!["first_name".into(), "order".into()]),
            threads,
            ..LoadOptions::default()
        };
        let t = Instant::now();
        let report = load(&csv[..], &opts, &mut sink).expect("loads");
        load_times.push(t.elapsed().as_secs_f64());
        last = Some(report);
    }
    let report = last.expect("ran");
    let s = report.summary;
    println!(
        "summary: rows {} accepted {} duplicates {} invalid {} suppressed {} (generator wrote {expected_valid} valid before dedupe; 0 means the cached input was reused)",
        s.rows, s.accepted, s.duplicates, s.invalid, s.suppressed
    );
    let rate = |t: f64| rows as f64 / t;
    let (parse_med, load_med) = (median(parse_times.clone()), median(load_times.clone()));
    let parse_best = parse_times.iter().copied().fold(f64::MAX, f64::min);
    let load_best = load_times.iter().copied().fold(f64::MAX, f64::min);
    println!("runs: {RUNS}; rows/s as median (best)");
    println!(
        "(a) CSV parse only:            {:>11.0} ({:.0})",
        rate(parse_med),
        rate(parse_best)
    );
    println!(
        "(b) parse + validate + dedupe: {:>11.0} ({:.0})",
        rate(load_med),
        rate(load_best)
    );
    println!("(b)/(a) at the median: {:.3}", parse_med / load_med);
    println!(
        "dedupe table: {:.1} bytes per unique number",
        report.dedupe_table_bytes as f64 / s.accepted.max(1) as f64
    );
    if let Some(mib) = peak_rss_mib() {
        println!(
            "peak RSS of this process: {mib:.0} MiB (includes the {:.0} MiB input held for the benchmark)",
            csv.len() as f64 / 1048576.0
        );
    }
}
