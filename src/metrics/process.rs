//! Process metrics from /proc (Linux): CPU time, resident memory, open
//! file descriptors, start time. Elsewhere nothing is reported.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug)]
pub(super) struct ProcessCollector;

/// Clock ticks per second and page size: the values Linux uses on every
/// architecture vellum is built for (`getconf CLK_TCK`, `PAGESIZE`).
const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_BYTES: u64 = 4096;

struct Stat {
    cpu_seconds: f64,
    rss_bytes: u64,
    start_ticks: u64,
}

fn stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name, field n of proc(5) is f[n - 3].
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let start_ticks: u64 = f.get(19)?.parse().ok()?;
    let rss_pages: u64 = f.get(21)?.parse().ok()?;
    Some(Stat {
        cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
        rss_bytes: rss_pages * PAGE_BYTES,
        start_ticks,
    })
}

fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn open_fds() -> Option<i64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as i64)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        if let Some(s) = stat() {
            let cpu = ConstCounter::new(s.cpu_seconds);
            cpu.encode(e.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds.",
                None,
                cpu.metric_type(),
            )?)?;
            let rss = ConstGauge::new(i64::try_from(s.rss_bytes).unwrap_or(i64::MAX));
            rss.encode(e.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                None,
                rss.metric_type(),
            )?)?;
            if let Some(boot) = boot_time() {
                let start = ConstGauge::new(boot as f64 + s.start_ticks as f64 / TICKS_PER_SECOND);
                start.encode(e.encode_descriptor(
                    "process_start_time_seconds",
                    "Start time of the process since the Unix epoch, in seconds.",
                    None,
                    start.metric_type(),
                )?)?;
            }
        }
        if let Some(n) = open_fds() {
            let fds = ConstGauge::new(n);
            fds.encode(e.encode_descriptor(
                "process_open_fds",
                "Open file descriptors.",
                None,
                fds.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
