//! `herald doctor`: the reference's Quick Debug Checklist, run against the configured API
//! (Meta's or the simulator): each check passes or fails with the fix.

use std::time::Duration;

use herald_cloudapi::{Client, Error};
use herald_store::Store;
use serde_json::Value;

use crate::config::Config;

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was found (pass) or what to do (fail).
    pub detail: String,
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: true,
        detail: detail.into(),
    }
}

fn fail(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: false,
        detail: detail.into(),
    }
}

const SCOPES: [&str; 2] = [
    "whatsapp_business_messaging",
    "whatsapp_business_management",
];

/// Runs every check; never fails itself.
pub async fn run(cfg: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    let w = &cfg.whatsapp;
    for (name, missing, fix) in [
        (
            "access token set",
            w.access_token.is_empty(),
            "set WA_ACCESS_TOKEN to a System User token (Business Manager → System Users)",
        ),
        (
            "phone number id set",
            w.phone_number_id.is_empty(),
            "set WA_PHONE_NUMBER_ID (WhatsApp Manager → Phone numbers → the number's id)",
        ),
        (
            "app secret set",
            w.app_secret.is_empty(),
            "set WA_APP_SECRET (App settings → Basic → App secret) so webhooks can be verified",
        ),
        (
            "verify token set",
            w.verify_token.is_empty(),
            "set VERIFY_TOKEN to the token entered in the app's webhook settings",
        ),
    ] {
        checks.push(if missing {
            fail(name, fix)
        } else {
            pass(name, "yes")
        });
    }
    let client = match Client::new(&cfg.client_config()) {
        Ok(c) => c,
        Err(e) => {
            checks.push(fail("Cloud API client", e.to_string()));
            return checks;
        }
    };
    checks.push(token(&client).await);
    if !w.phone_number_id.is_empty() {
        checks.extend(phone_number(&client, &w.phone_number_id).await);
    }
    checks.push(subscription(cfg).await);
    checks.push(templates(cfg).await);
    checks.push(store(cfg).await);
    checks.push(rate_card(cfg, herald_core::cost::today()));
    if !w.phone_number_id.is_empty() {
        checks.push(messaging_limit(cfg, &client).await);
    }
    checks
}

/// Rates older than this are likely to have changed (Meta revises them every quarter).
const RATE_CARD_STALE_DAYS: i32 = 183;

/// The rate card: its source, and whether its newest rates are recent enough to trust.
fn rate_card(cfg: &Config, today: jiff::civil::Date) -> Check {
    const NAME: &str = "rate card";
    let card = match cfg.cost.rate_card() {
        Ok(c) => c,
        Err(e) => return fail(NAME, e.to_string()),
    };
    let Some(newest) = card.newest_period() else {
        return fail(NAME, "it has no rates: add a [[rates]] period");
    };
    let age = (today - newest).get_days();
    let what = format!(
        "{}, newest rates from {newest} ({age} days old)",
        card.currency()
    );
    if age > RATE_CARD_STALE_DAYS {
        fail(
            NAME,
            format!(
                "{what}: Meta changes rates every quarter; add a period from Meta's current rate card to a file in cost.rate_cards"
            ),
        )
    } else {
        pass(NAME, what)
    }
}

/// The portfolio's messaging limit as Meta reports it, and how much of it Herald counted in
/// the last 24 h (when the store can be reached).
async fn messaging_limit(cfg: &Config, client: &Client) -> Check {
    const NAME: &str = "messaging limit";
    let pnid = &cfg.whatsapp.phone_number_id;
    let tier = match client.phone_number_info(pnid).await {
        Ok(info) => info.whatsapp_business_manager_messaging_limit,
        Err(e) => return fail(NAME, explain(&e)),
    };
    let Some(limit) = tier
        .as_deref()
        .and_then(herald_core::MessagingLimit::from_tier)
    else {
        return fail(
            NAME,
            format!(
                "Meta reported {tier:?}, which Herald does not know: sends outside open \
                 windows are capped only by messaging_limit.cap_users"
            ),
        );
    };
    let limits = cfg.messaging_limit.limit_config();
    let portfolio = limits.portfolio_of(pnid);
    let enforced = limits
        .effective(Some(limit))
        .map_or("none".to_owned(), |n| n.to_string());
    let used = match cfg.store.backend {
        crate::config::Backend::Redis
        | crate::config::Backend::RedisCluster
        | crate::config::Backend::RedisSentinel => match crate::app::connect(cfg).await {
            Ok(s) => match s.reach_use(portfolio, herald_core::REACH_WINDOW).await {
                Ok(u) => format!("{} users counted in the last 24 h", u.used),
                Err(e) => format!("today's use unknown ({e})"),
            },
            Err(_) => "today's use unknown (no store)".to_owned(),
        },
        crate::config::Backend::Memory => "today's use is kept in memory only".to_owned(),
    };
    pass(
        NAME,
        format!(
            "{} ({limit}) for portfolio {portfolio}; Herald enforces {enforced}; {used}",
            tier.unwrap_or_default()
        ),
    )
}

async fn token(client: &Client) -> Check {
    const NAME: &str = "token valid (debug_token)";
    match client.debug_token().await {
        Ok(t) if !t.is_valid => fail(
            NAME,
            "Meta says the token is not valid: generate a new System User token",
        ),
        Ok(t) => {
            let missing: Vec<&str> = SCOPES
                .iter()
                .copied()
                .filter(|s| !t.scopes.iter().any(|have| have == s))
                .collect();
            if !missing.is_empty() {
                return fail(
                    "token scopes",
                    format!(
                        "missing {}: assign them to the System User and generate a new token",
                        missing.join(", ")
                    ),
                );
            }
            let expiry = match t.expires_at {
                Some(0) | None => "never expires".to_owned(),
                Some(at) => format!(
                    "expires at {}",
                    jiff::Timestamp::from_second(at)
                        .map(|t| t.to_string())
                        .unwrap_or_else(|_| at.to_string())
                ),
            };
            pass(NAME, format!("valid, scopes ok, {expiry}"))
        }
        Err(e) => fail(NAME, explain(&e)),
    }
}

async fn phone_number(client: &Client, id: &str) -> Vec<Check> {
    match client.phone_number_info(id).await {
        Ok(info) => {
            let status = info.status.clone().unwrap_or_else(|| "unknown".into());
            let registered = if matches!(status.as_str(), "CONNECTED" | "unknown") {
                pass(
                    "phone number registered",
                    format!(
                        "{} ({}), status {status}",
                        info.display_phone_number.as_deref().unwrap_or("?"),
                        info.verified_name.as_deref().unwrap_or("?")
                    ),
                )
            } else {
                fail(
                    "phone number registered",
                    format!(
                        "status {status}: register the number with the Cloud API \
                         (POST /{id}/register) and check WhatsApp Manager"
                    ),
                )
            };
            let rating = info
                .quality_rating
                .clone()
                .unwrap_or_else(|| "UNKNOWN".into());
            let quality = if rating == "RED" {
                fail(
                    "quality rating",
                    "RED: Meta may lower your limits; slow down and review recent templates",
                )
            } else {
                pass("quality rating", rating)
            };
            vec![registered, quality]
        }
        Err(e) => vec![fail("phone number registered", explain(&e))],
    }
}

/// `GET /{version}/{path}` on the configured API with the token: (success, body).
async fn graph_get(cfg: &Config, path: &str) -> Result<(bool, Value), String> {
    let w = &cfg.whatsapp;
    let http = herald_cloudapi::http_builder_for(&w.api_base)
        .timeout(Duration::from_millis(w.request_timeout_ms))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!(
        "{}/{}/{path}",
        w.api_base.trim_end_matches('/'),
        w.api_version
    );
    let r = http
        .get(url)
        .bearer_auth(w.access_token.expose())
        .send()
        .await
        .map_err(|e| format!("cannot reach {}: {e}", w.api_base))?;
    let ok = r.status().is_success();
    let v = r
        .bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    Ok((ok, v))
}

fn meta_said(v: &Value) -> String {
    format!(
        "Meta answered: {}",
        v["error"]["message"].as_str().unwrap_or("an error")
    )
}

const NO_WABA: &str = "set HERALD_WHATSAPP__WABA_ID to check it (WhatsApp Manager → Account tools)";

/// `GET /{waba_id}/subscribed_apps`: the app must be subscribed for webhooks to arrive.
async fn subscription(cfg: &Config) -> Check {
    const NAME: &str = "webhook subscription";
    let waba = &cfg.whatsapp.waba_id;
    if waba.is_empty() {
        return fail(NAME, NO_WABA);
    }
    match graph_get(cfg, &format!("{waba}/subscribed_apps")).await {
        Ok((true, v)) => match v["data"].as_array().map_or(0, Vec::len) {
            0 => fail(
                NAME,
                format!("no app is subscribed: POST /{waba}/subscribed_apps with this token"),
            ),
            n => pass(NAME, format!("{n} app(s) subscribed")),
        },
        Ok((false, v)) => fail(NAME, meta_said(&v)),
        Err(e) => fail(NAME, e),
    }
}

/// `GET /{waba_id}/message_templates`: outside the 24 h window only approved templates go.
async fn templates(cfg: &Config) -> Check {
    const NAME: &str = "templates approved";
    let waba = &cfg.whatsapp.waba_id;
    if waba.is_empty() {
        return fail(NAME, NO_WABA);
    }
    let v = match graph_get(
        cfg,
        &format!("{waba}/message_templates?fields=name,language,status&limit=1000"),
    )
    .await
    {
        Ok((true, v)) => v,
        Ok((false, v)) => return fail(NAME, meta_said(&v)),
        Err(e) => return fail(NAME, e),
    };
    let all = v["data"].as_array().cloned().unwrap_or_default();
    let label = |t: &Value| {
        format!(
            "{} ({}) {}",
            t["name"].as_str().unwrap_or("?"),
            t["language"].as_str().unwrap_or("?"),
            t["status"].as_str().unwrap_or("?")
        )
    };
    let approved = all.iter().filter(|t| t["status"] == "APPROVED").count();
    let others: Vec<String> = all
        .iter()
        .filter(|t| t["status"] != "APPROVED")
        .map(label)
        .collect();
    if approved == 0 {
        return fail(
            NAME,
            "no approved template: campaigns to users outside the 24 h window need one \
             (WhatsApp Manager → Message templates)",
        );
    }
    let mut detail = format!("{approved} approved");
    if !others.is_empty() {
        detail.push_str(&format!(
            "; not usable until approved: {} (campaigns using them are refused with 132001 \
             or paused)",
            others.join(", ")
        ));
    }
    pass(NAME, detail)
}

async fn store(cfg: &Config) -> Check {
    if cfg.store.backend == crate::config::Backend::Memory {
        return fail(
            "store (memory)",
            "nothing survives a restart and no other process can share it: set \
             store.backend = \"redis\" and REDIS_URL for production",
        );
    }
    const NAME: &str = "store (Redis)";
    match crate::app::connect(cfg).await {
        Ok(s) => {
            let warnings = s.durability_warnings().await;
            if !warnings.is_empty() {
                return fail(NAME, warnings.join("; "));
            }
            let tls = if cfg.store.redis_url.starts_with("rediss://") {
                " over TLS"
            } else {
                ""
            };
            let ok = format!("reachable{tls}; noeviction and AOF on");
            let memory = s.memory_use().await.ok().flatten();
            let Some((m, max, share)) = memory.and_then(|m| Some((m, m.max_bytes?, m.share()?)))
            else {
                return pass(NAME, ok);
            };
            let in_use = format!(
                "{} of {} maxmemory in use ({:.0}%)",
                mb(m.used_bytes),
                mb(max),
                share * 100.0
            );
            if share >= FULL_WARNING {
                fail(
                    NAME,
                    format!(
                        "{in_use}: at the limit Redis refuses every write and sending stops; \
                         delete ended campaigns or raise maxmemory"
                    ),
                )
            } else {
                pass(NAME, format!("{ok}; {in_use}"))
            }
        }
        Err(e) => fail(NAME, format!("{e:#}")),
    }
}

/// The share of Redis's `maxmemory` in use from which doctor fails (the alert
/// `HeraldRedisMemoryHigh` fires at the same share).
const FULL_WARNING: f64 = 0.85;

/// Bytes in MB, for a person.
fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

fn explain(e: &Error) -> String {
    match e.code() {
        Some(190) => {
            "error 190: the token is invalid or expired; generate a new System User token".into()
        }
        Some(100) => "error 100: the id is wrong or this token cannot see it".into(),
        Some(10 | 200..=299) => format!(
            "error {}: the token lacks a permission; grant {} to the System User",
            e.code().unwrap_or_default(),
            SCOPES.join(" and ")
        ),
        _ => e.to_string(),
    }
}

/// Prints the report; answers whether every check passed.
pub fn print(checks: &[Check], out: &mut dyn std::io::Write) -> bool {
    for c in checks {
        let _ = writeln!(
            out,
            "{} {:<28} {}",
            if c.ok { "pass" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    checks.iter().all(|c| c.ok)
}

#[cfg(test)]
mod rate_card_tests {
    use super::*;

    #[test]
    fn an_old_rate_card_is_flagged() {
        let cfg = Config::default();
        let fresh = rate_card(&cfg, "2025-09-01".parse().unwrap());
        assert!(fresh.ok, "{fresh:?}");
        assert!(fresh.detail.contains("2025-07-01"), "{fresh:?}");
        let stale = rate_card(&cfg, "2026-12-02".parse().unwrap());
        assert!(!stale.ok, "{stale:?}");
        assert!(stale.detail.contains("cost.rate_cards"), "{stale:?}");
    }
}
