//! Shared helpers for Herald's benchmark programs (`src/bin/`). Each program prints what it
//! measured and the baseline it compares against; README.md lists them with their commands.

#![allow(clippy::print_stdout)]

use herald_core::{CampaignId, CampaignSpec, PhoneE164, Recipient, Vars};
use herald_store::{NewCampaign, Store};

/// The phone number id the benchmarks' campaigns send from.
pub const PNID: &str = "106540352242922";

/// A draft campaign named `name` of the `order_update` template, with one body parameter
/// filled from each recipient's first column.
pub async fn new_campaign<S: Store>(store: &S, name: &str) -> CampaignId {
    new_campaign_on(store, name, PNID).await
}

/// The same, sending from `phone_number_id`.
pub async fn new_campaign_on<S: Store>(store: &S, name: &str, phone_number_id: &str) -> CampaignId {
    let spec: CampaignSpec = serde_json::from_value(serde_json::json!({
        "name": name,
        "message": {"type": "template", "template": {"name": "order_update", "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "{{first_name}}"}]}]}}
    }))
    .expect("spec");
    store
        .create_campaign(NewCampaign {
            spec,
            phone_number_id: phone_number_id.into(),
            template: None,
        })
        .await
        .expect("create")
        .id
}

/// Recipients +447700000000 + i, each with a first name.
pub fn recipients(range: std::ops::Range<u64>) -> Vec<Recipient> {
    range
        .map(|i| {
            let phone = PhoneE164::from_u64(447_700_000_000 + i).expect("phone");
            Recipient::new(phone, Vars::from_values([format!("Name{i}")]))
        })
        .collect()
}

/// Peak resident memory of this process so far, in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A small deterministic generator (xorshift64*), so runs are comparable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat` (`"self"` for this
/// one).
pub fn cpu_of(pid: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (field(11) + field(12)) / 100.0
}

/// The machine's CPU time so far, from `/proc/stat`: (idle, all), in clock ticks summed over
/// its cores. Two readings give the share of the cores left idle between them.
pub fn machine_ticks() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = s
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user's).
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (idle, ticks.iter().take(8).sum())
}

/// The share of the machine's cores left idle between two [`machine_ticks`] readings (0–1).
pub fn idle_share(from: (u64, u64), to: (u64, u64)) -> f64 {
    let all = to.1.saturating_sub(from.1);
    if all == 0 {
        return 0.0;
    }
    to.0.saturating_sub(from.0) as f64 / all as f64
}

/// CPU seconds (user + system) the Redis server at `url` has used (`INFO cpu`); `None` when
/// it cannot be read (e.g. a server that hides it).
pub async fn redis_cpu(url: &str) -> Option<f64> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    redis_cpu_on(&mut conn).await
}

/// The same, on an open connection.
pub async fn redis_cpu_on(conn: &mut redis::aio::MultiplexedConnection) -> Option<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await.ok()?;
    Some(info_field::<f64>(&info, "used_cpu_sys")? + info_field::<f64>(&info, "used_cpu_user")?)
}

/// A field of an `INFO` answer (`name:value` lines).
fn info_field<T: std::str::FromStr>(info: &str, name: &str) -> Option<T> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// The bytes the Redis server at `url` has allocated (`INFO memory`'s `used_memory`), once
/// its lazy frees (`UNLINK`) have run; `None` when it cannot be read.
pub async fn redis_memory(url: &str) -> Option<u64> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    for _ in 0..100 {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .ok()?;
        if info_field::<u64>(&info, "lazyfree_pending_objects").unwrap_or(0) == 0 {
            return info_field(&info, "used_memory");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    None
}

/// The settlements of `jobs` accepted by Meta, each with a message id of its own.
pub fn accepted(jobs: &[herald_store::ClaimedJob]) -> Vec<herald_store::Settle> {
    jobs.iter()
        .map(|j| herald_store::Settle {
            job: j.into(),
            outcome: herald_store::Outcome::Accepted {
                message_id: herald_core::WaMessageId::new(&format!(
                    "wamid.HBgLNDQ3NzAwMDAwMDAwFQIAERgS{:012}",
                    j.id.seq
                ))
                .expect("id"),
            },
        })
        .collect()
}
