//! Helpers for the tests that run the real binary: free ports, child processes that are
//! stopped when dropped, the simulator, small HTTP reads.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_herald");
pub const PNID: &str = "106540352242922";

/// The repository's root.
pub fn root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child killed (SIGTERM first, with [`Proc::terminate`]) when dropped.
pub struct Proc(pub Child);

impl Proc {
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `herald` with these arguments and environment, from the repository's root.
pub fn herald(args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(root())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run herald")
}

/// Writes `dir/r.csv`, `n` recipients `+44 7912 <block><i, five digits>` with a first name
/// each, and answers its path.
pub fn recipients_csv(dir: &std::path::Path, n: u64, block: u8) -> PathBuf {
    use std::fmt::Write as _;
    let mut text = String::from("phone,first_name\n");
    for i in 0..n {
        writeln!(text, "+44 7912 {block}{i:05},Name{i}").unwrap();
    }
    let csv = dir.join("r.csv");
    std::fs::write(&csv, text).unwrap();
    csv
}

/// Polls campaign `id` on `server` until `done` holds for it, for `limit` at most; answers it.
pub async fn until_campaign(
    server: &str,
    id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    let mut last = None;
    loop {
        if let Some(c) = get_json(&format!("{server}/v1/campaigns/{id}")).await {
            if done(&c) {
                return c;
            }
            last = Some(c);
        }
        assert!(
            Instant::now() < deadline,
            "the campaign never got there: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (for `limit` at most) until campaign `id` on `server` has completed with every one of
/// its `n` recipients accepted and sent, and asserts that the simulator at `sim_url` accepted
/// each of them once: nobody lost, nobody messaged twice.
pub async fn completes_once(server: &str, id: &str, sim_url: &str, n: u64, limit: Duration) {
    let campaign = until_campaign(server, id, limit, |c| {
        c["status"] == "completed" && c["stats"]["sent"] == c["stats"]["accepted"]
    })
    .await;
    let stats = &campaign["stats"];
    let oracle = get_json(&format!("{sim_url}/_sim/stats"))
        .await
        .expect("oracle");
    assert_eq!(stats["recipients"], n, "{stats}");
    assert_eq!(stats["accepted"], n, "{stats}");
    assert_eq!(oracle["accepted"], n, "{oracle}");
    assert_eq!(
        oracle["duplicate_callbacks"],
        serde_json::json!([]),
        "{oracle}"
    );
}

/// `herald campaign create --start` of the sample message to the recipients in `csv`, with
/// `extra` arguments; asserts it succeeded and answers the campaign id and what it printed.
pub fn create_started(
    server: &str,
    name: &str,
    csv: &std::path::Path,
    extra: &[&str],
    env: &[(&str, String)],
) -> (String, String) {
    let mut args = vec![
        "campaign",
        "create",
        "--server",
        server,
        "--name",
        name,
        "--message",
        "config/sample-message.json",
        "--csv",
        csv.to_str().expect("a UTF-8 path"),
        "--start",
    ];
    args.extend_from_slice(extra);
    let out = herald(&args, env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = stdout
        .split_whitespace()
        .nth(1)
        .expect("campaign id")
        .to_owned();
    (id, stdout)
}

/// Starts `herald` with these arguments and environment, in the background.
pub fn spawn(args: &[&str], env: &[(&str, String)]) -> Proc {
    Proc(
        Command::new(BIN)
            .args(args)
            .current_dir(root())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("start herald"),
    )
}

/// Starts `herald sim` with these extra arguments; answers the child and its URL.
pub fn start_sim(extra: &[&str]) -> (Proc, String) {
    let mut sim = Proc(
        Command::new(BIN)
            .args(["sim", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("herald sim"),
    );
    // The simulator prints its URL on the first line of stdout.
    let mut line = String::new();
    BufReader::new(sim.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("sim url");
    (sim, line.trim().to_owned())
}

/// A simulator at 200 MPS whose status webhooks go to a Herald on a free port, and the
/// environment that Herald sends through it with (the store's settings are the caller's).
pub struct SimRig {
    /// Herald's base URL, `http://127.0.0.1:<port>`.
    pub server: String,
    pub sim: Proc,
    pub sim_url: String,
    pub env: Vec<(&'static str, String)>,
}

/// Starts the simulator of a [`SimRig`], for a Herald verifying webhooks with `verify`.
pub fn sim_rig(verify: &str) -> SimRig {
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let (sim, sim_url) = start_sim(&[
        "--mps",
        "200",
        "--webhook-url",
        &format!("{server}/webhook"),
    ]);
    let env = vec![
        ("HERALD_SERVER__LISTEN", format!("127.0.0.1:{port}")),
        ("HERALD_WHATSAPP__API_BASE", sim_url.clone()),
        ("HERALD_WHATSAPP__ALLOW_PLAIN_HTTP", "true".into()),
        ("HERALD_SENDER__MPS", "200".into()),
        ("WA_ACCESS_TOKEN", "sim-access-token".into()),
        ("WA_APP_SECRET", "sim-app-secret".into()),
        ("VERIFY_TOKEN", verify.into()),
        ("WA_PHONE_NUMBER_ID", PNID.into()),
    ];
    SimRig {
        server,
        sim,
        sim_url,
        env,
    }
}

fn http() -> reqwest::Client {
    herald_cloudapi::http_builder()
        .build()
        .expect("http client")
}

pub async fn get_json(url: &str) -> Option<Value> {
    let r = http().get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    serde_json::from_slice(&r.bytes().await.ok()?).ok()
}

pub async fn get_text(url: &str) -> Option<String> {
    let r = http().get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

/// The status and `Retry-After` of a GET of `url`, if it answers.
pub async fn status_of(url: &str) -> Option<(u16, Option<String>)> {
    let r = http().get(url).send().await.ok()?;
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Some((r.status().as_u16(), retry))
}

pub async fn reqwest_ok(url: &str) -> Option<()> {
    http()
        .get(url)
        .send()
        .await
        .ok()
        .filter(|r| r.status().is_success())
        .map(|_| ())
}

/// Waits until `url` answers 2xx, up to `limit` (a process that is starting).
pub async fn wait_ok(url: &str, limit: Duration) {
    let started = Instant::now();
    while reqwest_ok(url).await.is_none() {
        assert!(started.elapsed() < limit, "{url} did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
