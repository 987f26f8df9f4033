//! The campaign commands: a small client of the HTTP API with progress bars.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};

/// The API at `base` (e.g. `http://127.0.0.1:8080`), with an optional bearer key.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str, key: Option<String>) -> anyhow::Result<Self> {
        let http = herald_cloudapi::http_builder_for(base)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key: key.filter(|k| !k.is_empty()),
            http,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}/v1{path}", self.base));
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = r.send().await.with_context(|| {
            format!(
                "cannot reach Herald at {} (is `herald serve` running?)",
                self.base
            )
        })?;
        let status = response.status();
        let body = response.bytes().await.context("reading the answer")?;
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("{message} (HTTP {})", status.as_u16())
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let mut r = self.request(reqwest::Method::POST, path);
        if let Some(b) = body {
            r = r.json(b);
        }
        self.send(r).await
    }

    /// Streams a CSV file to the campaign, with a progress bar of bytes and rows. A file
    /// named `*.gz` goes as it is, gzip-compressed (`Content-Encoding: gzip`); `charset`
    /// names its character set when it is not UTF-8.
    pub async fn upload(
        &self,
        id: &str,
        (csv, charset): (&Path, Option<&str>),
        quiet: bool,
    ) -> anyhow::Result<Value> {
        let gzip = csv
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
        let file = tokio::fs::File::open(csv)
            .await
            .with_context(|| format!("opening {}", csv.display()))?;
        let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let multi = if quiet {
            MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
        } else {
            MultiProgress::new()
        };
        let bar = multi.add(ProgressBar::new(size));
        let _shown = crate::telemetry::show(&multi);
        bar.set_style(
            ProgressStyle::with_template(
                "uploading {bar:30} {bytes}/{total_bytes} · {msg} · {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let counted = bar.clone();
        let mut rows: u64 = 0;
        let stream = tokio_util::io::ReaderStream::new(file).map(move |chunk| {
            if let Ok(c) = &chunk {
                counted.inc(c.len() as u64);
                // Compressed bytes say nothing of the rows.
                if !gzip {
                    rows += c.iter().filter(|&&b| b == b'\n').count() as u64;
                    counted.set_message(format!("~{} rows", rows.saturating_sub(1)));
                }
            }
            chunk
        });
        let mut r = self
            .request(
                reqwest::Method::POST,
                &format!("/campaigns/{id}/recipients"),
            )
            .header(
                "content-type",
                charset.map_or_else(
                    || "text/csv".to_owned(),
                    |c| format!("text/csv; charset={c}"),
                ),
            );
        if gzip {
            r = r.header("content-encoding", "gzip");
        }
        let r = r.body(reqwest::Body::wrap_stream(stream));
        let result = self.send(r).await;
        bar.finish_and_clear();
        result
    }
}

/// What `campaign create` needs.
#[derive(Debug)]
pub struct Create<'a> {
    pub name: &'a str,
    pub message: &'a Path,
    pub csv: &'a Path,
    /// The file's character set, when it is not UTF-8.
    pub charset: Option<&'a str>,
    pub default_region: Option<&'a str>,
    pub phone_number_id: Option<&'a str>,
    pub mps: Option<u32>,
    pub schedule_at: Option<&'a str>,
    /// Sending hours, `HH:MM-HH:MM`, in each recipient's zone or in `time_zone`.
    pub send_window: Option<&'a str>,
    pub time_zone: Option<&'a str>,
    /// `REGION=ZONE` overrides of a region's zone for the send window.
    pub zones: &'a [String],
    pub start: bool,
    pub quiet: bool,
    /// Stop before the campaign's cost passes this (the rate card's currency).
    pub max_cost: Option<f64>,
}

/// Creates a campaign, uploads its recipients, prints the load summary and optionally
/// starts it. Returns the campaign id.
pub async fn create(
    api: &ApiClient,
    c: &Create<'_>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<String> {
    // A file that cannot be read stops everything before the campaign exists.
    drop(std::fs::File::open(c.csv).with_context(|| format!("opening {}", c.csv.display()))?);
    let text = std::fs::read_to_string(c.message)
        .with_context(|| format!("reading {}", c.message.display()))?;
    let message: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", c.message.display()))?;
    let mut spec = json!({ "name": c.name, "message": message });
    if let Some(r) = c.default_region {
        spec["default_region"] = json!(r);
    }
    if let Some(p) = c.phone_number_id {
        spec["phone_number_id"] = json!(p);
    }
    if let Some(m) = c.mps {
        spec["mps"] = json!(m);
    }
    if let Some(s) = c.schedule_at {
        spec["schedule_at"] = json!(s);
    }
    if let Some(m) = c.max_cost {
        spec["max_cost"] = json!(m);
    }
    if let Some(w) = c.send_window {
        let (start, end) = w.split_once('-').with_context(|| {
            format!("--send-window {w:?}: write the hours as HH:MM-HH:MM, e.g. 09:00-20:00")
        })?;
        spec["send_window"] = json!({ "start": start.trim(), "end": end.trim() });
        if let Some(z) = c.time_zone {
            spec["send_window"]["time_zone"] = json!(z);
        }
        for z in c.zones {
            let (region, zone) = z.split_once('=').with_context(|| {
                format!("--zone {z:?}: write it as REGION=ZONE, e.g. US=America/Los_Angeles")
            })?;
            spec["send_window"]["zones"][region.trim()] = json!(zone.trim());
        }
    } else if c.time_zone.is_some() || !c.zones.is_empty() {
        anyhow::bail!(
            "--time-zone and --zone go with --send-window (the zones its hours are read in)"
        );
    }
    let campaign = api.post("/campaigns", Some(&spec)).await?;
    let id = campaign["id"]
        .as_str()
        .context("the server answered without a campaign id")?
        .to_owned();
    writeln!(out, "campaign {id} created ({})", c.name)?;
    let summary = api
        .upload(&id, (c.csv, c.charset), c.quiet)
        .await
        .with_context(|| {
            format!(
                "campaign {id} is created, but took no recipients from {}: upload them with \
                 `herald campaign upload {id} --csv FILE` (rows already accepted are not \
                 added twice), or `herald campaign cancel {id}`",
                c.csv.display()
            )
        })?;
    print_summary(&summary, out)?;
    if c.start {
        // The server refuses a campaign that took nobody (`no_recipients`): it stays a draft.
        let v = api
            .post(&format!("/campaigns/{id}/start"), None)
            .await
            .with_context(|| format!("campaign {id} is not started"))?;
        writeln!(
            out,
            "campaign {id} is {}",
            v["status"].as_str().unwrap_or("?")
        )?;
    }
    Ok(id)
}

/// Uploads more recipients to an existing campaign and prints the load summary.
pub async fn upload(
    api: &ApiClient,
    id: &str,
    (csv, charset): (&Path, Option<&str>),
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let summary = api.upload(id, (csv, charset), false).await?;
    print_summary(&summary, out)
}

fn print_summary(s: &Value, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    writeln!(
        out,
        "loaded {} rows: {} accepted, {} duplicates, {} invalid, {} suppressed",
        n("rows"),
        n("accepted"),
        n("duplicates"),
        n("invalid"),
        n("suppressed")
    )?;
    if n("already_present") > 0 {
        writeln!(
            out,
            "{} rows were already in the campaign (an earlier upload): nothing added twice",
            n("already_present")
        )?;
    }
    print_limit(&s["messaging_limit"], out)?;
    print_estimate(&s["cost"], out)?;
    if let Some(rejects) = s["rejects"].as_array().filter(|r| !r.is_empty()) {
        writeln!(
            out,
            "first rejects (all of them: `herald campaign failures ID`):"
        )?;
        for r in rejects.iter().take(10) {
            writeln!(
                out,
                "  line {:>6}  {:<18} {:<20} {}",
                r["line"].as_u64().unwrap_or(0),
                r["raw"].as_str().unwrap_or(""),
                r["reason"].as_str().unwrap_or(""),
                r["detail"].as_str().unwrap_or("")
            )?;
        }
    }
    Ok(())
}

/// The stats table of one campaign.
pub fn print_campaign(c: &Value, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let s = &c["stats"];
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    writeln!(
        out,
        "campaign {}  {}  [{}]{}",
        c["id"].as_str().unwrap_or("?"),
        c["name"].as_str().unwrap_or(""),
        c["status"].as_str().unwrap_or("?"),
        c["status_reason"]
            .as_str()
            .map(|r| format!(" — {r}"))
            .unwrap_or_default()
    )?;
    let w = &c["spec"]["send_window"];
    if let (Some(start), Some(end)) = (w["start"].as_str(), w["end"].as_str()) {
        let mut zone = w["time_zone"]
            .as_str()
            .map_or("each recipient's time zone".to_owned(), |z| z.to_owned());
        if let Some(zones) = w["zones"].as_object() {
            let given: Vec<String> = zones
                .iter()
                .map(|(r, z)| format!("{r}: {}", z.as_str().unwrap_or("?")))
                .collect();
            zone = format!("{zone} ({})", given.join(", "));
        }
        writeln!(out, "  send window {start}–{end}, {zone}")?;
    }
    for (label, key) in [
        ("recipients", "recipients"),
        ("pending", "pending"),
        ("in flight", "in_flight"),
        ("in doubt", "in_doubt"),
        ("accepted", "accepted"),
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("read", "read"),
        ("failed", "failed"),
        ("cancelled", "cancelled"),
        ("replied", "replied"),
    ] {
        writeln!(out, "  {label:<12}{:>10}", n(key))?;
        if key == "pending" && n("waiting_for_send_window") > 0 {
            writeln!(
                out,
                "    of which {} wait for their send window",
                n("waiting_for_send_window")
            )?;
        }
    }
    for (label, key) in [("skipped", "skipped"), ("declined", "declined")] {
        let Some(reasons) = s[key].as_object() else {
            continue;
        };
        let parts: Vec<String> = reasons
            .iter()
            .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if !parts.is_empty() {
            writeln!(out, "  {label:<12}{}", parts.join(", "))?;
        }
    }
    if let Some(errors) = s["errors"].as_object().filter(|e| !e.is_empty()) {
        let parts: Vec<String> = errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        writeln!(out, "  errors      {}", parts.join(", "))?;
    }
    print_limit(&c["messaging_limit"], out)?;
    print_cost(&c["stats"]["cost"], out)?;
    Ok(())
}

/// Money as the API gives it (a number in units of the currency), at Meta's four decimals.
fn money(v: &Value) -> String {
    v.as_f64().map_or_else(|| "?".into(), |m| format!("{m:.4}"))
}

/// One line: what the campaign's recipients will cost, as a range.
fn print_estimate(e: &Value, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let Some(currency) = e["currency"].as_str() else {
        return Ok(());
    };
    let category = e["category"].as_str().unwrap_or("unknown");
    if category == "unknown" {
        writeln!(
            out,
            "cost estimate: unknown (the template's category is not known; set whatsapp.waba_id, or template_category in the campaign)"
        )?;
        return Ok(());
    }
    let recipients: u64 = e["by_market"]
        .as_array()
        .map(|m| m.iter().filter_map(|x| x["recipients"].as_u64()).sum())
        .unwrap_or(0);
    write!(
        out,
        "cost estimate ({category}, {recipients} recipients): {} to {} {currency} ({:.0}% to 100% delivered)",
        money(&e["low"]),
        money(&e["high"]),
        e["expected_delivery_rate"].as_f64().unwrap_or(1.0) * 100.0,
    )?;
    match e["unknown_recipients"].as_u64() {
        Some(n) if n > 0 => writeln!(out, "; {n} recipients without a rate are not in it")?,
        _ => writeln!(out)?,
    }
    Ok(())
}

/// The campaign's cost: the estimate, what it cost so far, the cap and any re-categorisation.
fn print_cost(c: &Value, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let Some(currency) = c["currency"].as_str() else {
        return Ok(());
    };
    print_estimate(&c["estimate"], out)?;
    let a = &c["actual"];
    let n = |k: &str| a[k].as_u64().unwrap_or(0);
    write!(
        out,
        "cost so far: {} {currency} for {} charged messages ({} free)",
        money(&a["total"]),
        n("charged_messages"),
        n("free_messages"),
    )?;
    if n("unknown_messages") > 0 {
        write!(out, "; {} charged without a rate", n("unknown_messages"))?;
    }
    if c["max_cost"].is_number() {
        write!(
            out,
            "; {} of max_cost {} committed ({} on their way)",
            money(&c["committed"]),
            money(&c["max_cost"]),
            c["on_the_way"].as_u64().unwrap_or(0)
        )?;
    }
    writeln!(out)?;
    let d = &c["drift"];
    if let (Some(from), Some(to)) = (d["from"].as_str(), d["to"].as_str()) {
        writeln!(
            out,
            "category changed from {from} to {to}: the estimate's high end moves from {} to {} {currency} ({:+.4})",
            money(&d["high_before"]),
            money(&d["high_now"]),
            d["difference"].as_f64().unwrap_or(0.0)
        )?;
    }
    Ok(())
}

/// The campaign's place in its portfolio's messaging limit, when one is enforced.
fn print_limit(l: &Value, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let Some(limit) = l["limit"].as_u64() else {
        return Ok(());
    };
    let n = |k: &str| l[k].as_u64().unwrap_or(0);
    write!(
        out,
        "messaging limit ({}): {} of {limit} users used in the last 24 h; {} fit now, {} wait",
        l["portfolio"].as_str().unwrap_or("default"),
        n("used"),
        n("fit_now"),
        n("waiting"),
    )?;
    if n("waiting") > 0 {
        if let Some(t) = l["next_frees_at"].as_str() {
            write!(out, "; the next place frees at {t}")?;
        }
        if let Some(t) = l["all_fit_by"].as_str() {
            write!(out, "; all fit by about {t}")?;
        }
    }
    writeln!(out)?;
    Ok(())
}

fn is_final(c: &Value) -> bool {
    matches!(c["status"].as_str(), Some("completed" | "cancelled"))
}

/// Live bars until the campaign ends (and its webhooks have settled) or `stop` fires.
/// Returns the last view of the campaign.
pub async fn watch(
    api: &ApiClient,
    id: &str,
    stop: &tokio_util::sync::CancellationToken,
    hidden: bool,
) -> anyhow::Result<Value> {
    let multi = if hidden {
        MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
    } else {
        MultiProgress::new()
    };
    let style = ProgressStyle::with_template("{prefix:>10} {bar:40} {pos:>8}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bars: Vec<(&str, ProgressBar)> = ["pending", "accepted", "delivered", "read", "failed"]
        .into_iter()
        .map(|k| {
            let b = multi.add(ProgressBar::new(0));
            b.set_style(style.clone());
            b.set_prefix(k);
            (k, b)
        })
        .collect();
    let status = multi.add(ProgressBar::new_spinner());
    let _shown = crate::telemetry::show(&multi);
    let mut last: Option<(Instant, u64)> = None;
    let mut rate = 0.0;
    let mut settled_since: Option<Instant> = None;
    let mut previous = Value::Null;
    loop {
        let c = api.get(&format!("/campaigns/{id}")).await?;
        let s = &c["stats"];
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        let total = n("recipients");
        for (k, b) in &bars {
            b.set_length(total);
            b.set_position(n(k));
        }
        let now = Instant::now();
        let done = n("accepted") + n("failed");
        if let Some((t, d)) = last {
            let dt = now.duration_since(t).as_secs_f64();
            if dt > 0.0 {
                rate = 0.7 * rate + 0.3 * (done.saturating_sub(d) as f64 / dt);
            }
        }
        last = Some((now, done));
        status.set_message(format!(
            "[{}] {:.0} msg/s{}",
            c["status"].as_str().unwrap_or("?"),
            rate,
            c["status_reason"]
                .as_str()
                .map(|r| format!(" — {r}"))
                .unwrap_or_default()
        ));
        status.tick();
        // After the end, wait until webhook counts stop moving (or 10 s).
        if is_final(&c) {
            let moved = previous["stats"] != c["stats"];
            let since = *settled_since.get_or_insert(now);
            if (!moved && now.duration_since(since) > Duration::from_secs(3))
                || now.duration_since(since) > Duration::from_secs(10)
            {
                multi.clear().ok();
                return Ok(c);
            }
        }
        previous = c;
        tokio::select! {
            () = stop.cancelled() => {
                multi.clear().ok();
                return Ok(previous);
            }
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// `campaign list`: every campaign (with `status`, only those), newest first, a page of the
/// API's list at a time, each printed as it comes.
pub async fn list(
    api: &ApiClient,
    status: Option<&str>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<28} {:<10} {:>10} {:>10} {:>10} {:>8}  name",
        "id", "status", "recipients", "accepted", "delivered", "failed"
    )?;
    let mut next: Option<String> = None;
    loop {
        let mut path = "/campaigns?limit=1000".to_owned();
        if let Some(s) = status {
            let s = percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC);
            path.push_str(&format!("&status={s}"));
        }
        if let Some(before) = &next {
            path.push_str(&format!("&before={before}"));
        }
        let page = api.get(&path).await?;
        print_rows(&page, out)?;
        next = page["next"].as_str().map(str::to_owned);
        if next.is_none() {
            return Ok(());
        }
    }
}

fn print_rows(v: &Value, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    for c in v["campaigns"].as_array().into_iter().flatten() {
        let s = &c["stats"];
        writeln!(
            out,
            "{:<28} {:<10} {:>10} {:>10} {:>10} {:>8}  {}",
            c["id"].as_str().unwrap_or("?"),
            c["status"].as_str().unwrap_or("?"),
            s["recipients"].as_u64().unwrap_or(0),
            s["accepted"].as_u64().unwrap_or(0),
            s["delivered"].as_u64().unwrap_or(0),
            s["failed"].as_u64().unwrap_or(0),
            c["name"].as_str().unwrap_or("")
        )?;
    }
    Ok(())
}

/// `campaign failures`: the CSV, streamed to `out`.
/// `herald suppressions export`: the list as CSV to `out`.
pub async fn suppressions_export(
    api: &ApiClient,
    phone_number_id: &str,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    download(api, &format!("/suppressions/{phone_number_id}"), out).await
}

/// `herald suppressions import FILE`: a CSV of numbers or user ids onto the list.
pub async fn suppressions_import(
    api: &ApiClient,
    phone_number_id: &str,
    csv: &Path,
) -> anyhow::Result<Value> {
    let body = tokio::fs::read(csv)
        .await
        .with_context(|| format!("reading {}", csv.display()))?;
    let r = api
        .request(
            reqwest::Method::POST,
            &format!("/suppressions/{phone_number_id}"),
        )
        .header(reqwest::header::CONTENT_TYPE, "text/csv")
        .body(body);
    api.send(r).await
}

/// `herald suppressions remove ENTRY`: a number or a user id off the list.
pub async fn suppressions_remove(
    api: &ApiClient,
    phone_number_id: &str,
    entry: &str,
) -> anyhow::Result<Value> {
    if entry.parse::<herald_core::PhoneE164>().is_err()
        && herald_core::business_user_id(entry).is_none()
    {
        bail!("{entry:?} is neither an E.164 number nor a business-scoped user id");
    }
    api.send(api.request(
        reqwest::Method::DELETE,
        &format!("/suppressions/{phone_number_id}/{entry}"),
    ))
    .await
}

/// `herald campaign delete ID`: an ended campaign and everything kept of it.
pub async fn delete(api: &ApiClient, id: &str) -> anyhow::Result<Value> {
    herald_core::CampaignId::new(id).map_err(|e| anyhow::anyhow!("{id:?}: {e}"))?;
    api.send(api.request(reqwest::Method::DELETE, &format!("/campaigns/{id}")))
        .await
}

pub async fn failures(
    api: &ApiClient,
    id: &str,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    download(api, &format!("/campaigns/{id}/failures"), out).await
}

/// The campaign's cost as CSV: the estimate by market, the actual by market and category.
pub async fn cost(api: &ApiClient, id: &str, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    download(api, &format!("/campaigns/{id}/cost"), out).await
}

/// Streams a CSV answer to `out`.
async fn download(api: &ApiClient, path: &str, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let response = api
        .request(reqwest::Method::GET, path)
        .send()
        .await
        .with_context(|| format!("cannot reach Herald at {}", api.base))?;
    if !response.status().is_success() {
        let status = response.status();
        let v: Value = response.json().await.unwrap_or(Value::Null);
        bail!(
            "{} (HTTP {})",
            v["error"]["message"].as_str().unwrap_or("request failed"),
            status.as_u16()
        );
    }
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk.context("reading the report")?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_campaign_says_so() {
        let c = serde_json::json!({
            "id": "c1", "name": "n", "status": "running", "stats": {"pending": 3},
            "messaging_limit": {"portfolio": "default", "limit": 250, "used": 250, "available": 0,
                "fit_now": 0, "waiting": 3, "next_frees_at": "2026-12-03T10:00:00Z",
                "all_fit_by": "2026-12-03T11:00:00Z"}
        });
        let mut out = Vec::new();
        print_campaign(&c, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("messaging limit (default): 250 of 250 users used in the last 24 h; 0 fit now, 3 wait; the next place frees at 2026-12-03T10:00:00Z"),
            "{text}"
        );
        let mut out = Vec::new();
        print_campaign(&serde_json::json!({"stats": {}}), &mut out).unwrap();
        assert!(!String::from_utf8(out).unwrap().contains("messaging limit"));
    }

    #[test]
    fn a_campaign_with_a_send_window_shows_it_and_who_waits_for_it() {
        let c = serde_json::json!({
            "id": "c1", "name": "n", "status": "running",
            "spec": {"send_window": {"start": "09:00", "end": "20:00",
                "zones": {"US": "America/Los_Angeles"}}},
            "stats": {"pending": 5, "waiting_for_send_window": 4}
        });
        let mut out = Vec::new();
        print_campaign(&c, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "send window 09:00–20:00, each recipient's time zone (US: America/Los_Angeles)"
            ),
            "{text}"
        );
        assert!(
            text.contains("of which 4 wait for their send window"),
            "{text}"
        );
        let mut out = Vec::new();
        print_campaign(&serde_json::json!({"stats": {"pending": 5}}), &mut out).unwrap();
        assert!(!String::from_utf8(out).unwrap().contains("send window"));
    }

    #[test]
    fn cost_lines_show_the_estimate_the_actual_the_cap_and_a_drift() {
        use herald_core::cost::{CostModel, RateCard};
        let card = RateCard::parse([(
            "t.toml",
            "currency = \"USD\"\nsource = \"t\"\n[markets]\nuk = [\"GB\"]\n[[rates]]\n\
             effective_from = \"2025-07-01\"\nuk = { marketing = 0.05, utility = 0.01 }\n",
        )])
        .unwrap();
        let gb: herald_core::Region = "GB".parse().unwrap();
        let mut stats = herald_core::Stats {
            recipients: 101,
            accepted: 12,
            regions: [(gb, 100), (herald_core::Region::UNKNOWN, 1)]
                .into_iter()
                .collect(),
            ..herald_core::Stats::default()
        };
        stats.pricing.charged.push(herald_core::cost::Charged {
            region: gb,
            category: "marketing".into(),
            day: "2026-12-01".parse().unwrap(),
            messages: 10,
        });
        let spec: herald_core::CampaignSpec = serde_json::from_value(serde_json::json!({
            "name": "n", "message": {"type": "template", "template": {"name": "t", "language": {"code": "en"}}},
            "template_category": "MARKETING", "priced_category": "UTILITY", "max_cost": 2.0
        }))
        .unwrap();
        let model = CostModel {
            card: &card,
            today: "2026-12-02".parse().unwrap(),
            delivery_rate: 0.9,
        };
        let cost = serde_json::to_value(model.campaign(&spec, &stats)).unwrap();
        let c = serde_json::json!({"id": "c1", "name": "n", "status": "running", "stats": {"cost": cost}});
        let mut out = Vec::new();
        print_campaign(&c, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in [
            "cost estimate (marketing, 101 recipients): 4.5000 to 5.0000 USD (90% to 100% delivered); 1 recipients without a rate are not in it",
            "cost so far: 0.5000 USD for 10 charged messages (0 free); 0.6000 of max_cost 2.0000 committed (2 on their way)",
            "category changed from utility to marketing: the estimate's high end moves from 1.0000 to 5.0000 USD (+4.0000)",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
    }
}
