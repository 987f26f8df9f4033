//! `herald campaign …`: create, start, pause, resume, cancel, watch, list, and download a
//! campaign's failures, through the HTTP API.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::app;
use crate::cli::api_client;
use crate::cli::client::{self, ApiClient, Create};
use crate::config::Config;

#[derive(Debug, Args)]
pub struct CampaignArgs {
    /// Herald's address (default: from server.listen).
    #[arg(long, global = true)]
    pub server: Option<String>,
    #[command(subcommand)]
    pub command: CampaignCommand,
}

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Creates a campaign and uploads its recipients.
    Create {
        #[arg(long)]
        name: String,
        /// A Cloud API message body (without `to`), with {{column}} placeholders.
        #[arg(long, value_name = "JSON_FILE")]
        message: PathBuf,
        #[arg(long, value_name = "CSV_FILE")]
        csv: PathBuf,
        /// The file's character set when it is not UTF-8, e.g. windows-1252 (what Excel's
        /// "CSV (Comma delimited)" uses in much of the world). UTF-16 is told by itself.
        #[arg(long, value_name = "CHARSET")]
        charset: Option<String>,
        /// Region for numbers in national form (ISO 3166, e.g. US).
        #[arg(long)]
        default_region: Option<String>,
        #[arg(long)]
        phone_number_id: Option<String>,
        /// A cap below the phone number's rate.
        #[arg(long)]
        mps: Option<u32>,
        /// RFC 3339 time at which it starts itself.
        #[arg(long)]
        schedule_at: Option<String>,
        /// Stop before the campaign's cost passes this, in the rate card's currency (see
        /// `herald campaign status` for the estimate and the cost so far).
        #[arg(long)]
        max_cost: Option<f64>,
        /// Message recipients only between these hours of their local time (from their
        /// number's country), e.g. 09:00-20:00; outside them, sends wait.
        #[arg(long, value_name = "HH:MM-HH:MM")]
        send_window: Option<String>,
        /// Read the send window in this IANA time zone for every recipient (e.g.
        /// Europe/Berlin) instead of each recipient's own.
        #[arg(long, requires = "send_window")]
        time_zone: Option<String>,
        /// Read the send window in this zone for one region instead of Herald's choice for
        /// it (e.g. US=America/Los_Angeles); repeat for more regions.
        #[arg(
            long = "zone",
            value_name = "REGION=ZONE",
            requires = "send_window",
            conflicts_with = "time_zone"
        )]
        zones: Vec<String>,
        /// Start sending at once.
        #[arg(long)]
        start: bool,
    },
    /// Uploads more recipients to a campaign that has not ended: after a refused upload, or
    /// a second file. Numbers already in it are not added twice.
    Upload {
        id: String,
        #[arg(long, value_name = "CSV_FILE")]
        csv: PathBuf,
        /// The file's character set when it is not UTF-8 (as for `create`).
        #[arg(long, value_name = "CHARSET")]
        charset: Option<String>,
    },
    /// Starts a campaign; one waiting for its scheduled time starts now.
    Start { id: String },
    /// Pauses sending; what is in flight still settles.
    Pause { id: String },
    /// Resumes a paused campaign.
    Resume {
        id: String,
        /// A new cost cap (a campaign paused at its max_cost goes on with a higher one).
        #[arg(long)]
        max_cost: Option<f64>,
    },
    /// Cancels a campaign: its unsent recipients are never sent.
    Cancel { id: String },
    /// Deletes an ended campaign and everything kept of it (recipients, outcomes, stats):
    /// export `failures` and `cost` first if they are wanted.
    Delete { id: String },
    /// Stats of one campaign.
    Status {
        id: String,
        /// Live progress bars until the campaign ends.
        #[arg(long)]
        watch: bool,
        /// The raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every campaign, newest first (read from the API a page at a time).
    List {
        /// Only those with this status (draft, scheduled, running, paused, completed,
        /// cancelled).
        #[arg(long)]
        status: Option<String>,
    },
    /// CSV of failed and skipped recipients with reasons.
    Failures { id: String },
    /// CSV of the campaign's cost: the estimate by market, the actual by market and category.
    Cost { id: String },
    /// Creates a campaign for some of another one's recipients, picked by outcome (no CSV):
    /// the new message's {{column}} placeholders take the values they had.
    FollowUp {
        /// The first campaign.
        id: String,
        /// failed_retryable, frequency_capped, not_delivered, not_read or replied.
        #[arg(long)]
        audience: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_name = "JSON_FILE")]
        message: PathBuf,
        /// For not_delivered: hours after Meta accepted it (default 24).
        #[arg(long)]
        after_hours: Option<u32>,
        #[arg(long)]
        mps: Option<u32>,
        /// Start sending at once.
        #[arg(long)]
        start: bool,
    },
}

/// Runs one campaign command.
pub async fn run(
    args: CampaignArgs,
    cfg: &Config,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<ExitCode> {
    let api = api_client(args.server, cfg, env)?;
    let mut out = std::io::stdout();
    match args.command {
        CampaignCommand::Create {
            name,
            message,
            csv,
            charset,
            default_region,
            phone_number_id,
            mps,
            schedule_at,
            max_cost,
            send_window,
            time_zone,
            zones,
            start,
        } => {
            client::create(
                &api,
                &Create {
                    name: &name,
                    message: &message,
                    csv: &csv,
                    charset: charset.as_deref(),
                    default_region: default_region.as_deref(),
                    phone_number_id: phone_number_id.as_deref(),
                    mps,
                    schedule_at: schedule_at.as_deref(),
                    send_window: send_window.as_deref(),
                    time_zone: time_zone.as_deref(),
                    zones: &zones,
                    start,
                    quiet: false,
                    max_cost,
                },
                &mut out,
            )
            .await?;
        }
        CampaignCommand::Upload { id, csv, charset } => {
            client::upload(&api, &id, (&csv, charset.as_deref()), &mut out).await?;
        }
        CampaignCommand::Start { id } => action(&api, &id, "start", None, &mut out).await?,
        CampaignCommand::Pause { id } => action(&api, &id, "pause", None, &mut out).await?,
        CampaignCommand::Resume { id, max_cost } => {
            let body = max_cost.map(|m| serde_json::json!({ "max_cost": m }));
            action(&api, &id, "resume", body.as_ref(), &mut out).await?;
        }
        CampaignCommand::Cancel { id } => action(&api, &id, "cancel", None, &mut out).await?,
        CampaignCommand::Delete { id } => {
            use std::io::Write as _;
            client::delete(&api, &id).await?;
            writeln!(out, "campaign {id} deleted")?;
        }
        CampaignCommand::Status { id, watch, json } => {
            let c = if watch {
                let stop = app::shutdown_on_signal();
                client::watch(&api, &id, &stop, false).await?
            } else {
                api.get(&format!("/campaigns/{id}")).await?
            };
            if json {
                use std::io::Write as _;
                writeln!(out, "{}", serde_json::to_string_pretty(&c)?)?;
            } else {
                client::print_campaign(&c, &mut out)?;
            }
        }
        CampaignCommand::List { status } => {
            client::list(&api, status.as_deref(), &mut out).await?;
        }
        CampaignCommand::Failures { id } => client::failures(&api, &id, &mut out).await?,
        CampaignCommand::Cost { id } => client::cost(&api, &id, &mut out).await?,
        CampaignCommand::FollowUp {
            id,
            audience,
            name,
            message,
            after_hours,
            mps,
            start,
        } => {
            let text = std::fs::read_to_string(&message)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", message.display()))?;
            let message: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not valid JSON: {e}", message.display()))?;
            let mut campaign = serde_json::json!({ "name": name, "message": message });
            if let Some(m) = mps {
                campaign["mps"] = m.into();
            }
            let mut body = serde_json::json!({ "audience": audience, "campaign": campaign });
            if let Some(h) = after_hours {
                body["not_delivered_after_hours"] = h.into();
            }
            let v = api
                .post(&format!("/campaigns/{id}/follow-up"), Some(&body))
                .await?;
            let new = v["campaign"]["id"].as_str().unwrap_or("?").to_owned();
            let n = |k: &str| v["picked"][k].as_u64().unwrap_or(0);
            use std::io::Write as _;
            writeln!(
                out,
                "campaign {new} created ({name}): {} of {} recipients of {id} added; left out: \
                 {} suppressed, {} whose values do not fit the message",
                n("added"),
                n("looked_at"),
                n("suppressed"),
                n("unusable_values")
            )?;
            if start {
                action(&api, &new, "start", None, &mut out).await?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn action(
    api: &ApiClient,
    id: &str,
    verb: &str,
    body: Option<&serde_json::Value>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let c = api.post(&format!("/campaigns/{id}/{verb}"), body).await?;
    writeln!(
        out,
        "campaign {id} is {}",
        c["status"].as_str().unwrap_or("?")
    )?;
    if body.is_some()
        && let Some(cap) = c["stats"]["cost"]["max_cost"].as_f64()
    {
        writeln!(out, "max_cost is now {cap:.4}")?;
    }
    Ok(())
}
