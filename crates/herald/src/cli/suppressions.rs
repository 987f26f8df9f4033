//! `herald suppressions …`: export, import and remove entries of a phone number's
//! suppression list, through the HTTP API.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::cli::api_client;
use crate::cli::client;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct SuppressionArgs {
    /// Herald's address (default: from server.listen).
    #[arg(long, global = true)]
    pub server: Option<String>,
    /// The phone number whose list it is (default: whatsapp.phone_number_id).
    #[arg(long, global = true)]
    pub phone_number_id: Option<String>,
    #[command(subcommand)]
    pub command: SuppressionCommand,
}

#[derive(Debug, Subcommand)]
pub enum SuppressionCommand {
    /// Writes the list as CSV (`kind,id,reason,date`) to standard output.
    Export,
    /// Puts every row of a CSV (a `number` or `user_id` column) on the list.
    Import {
        #[arg(value_name = "CSV_FILE")]
        csv: PathBuf,
    },
    /// Takes a number (E.164) or a business-scoped user id off the list.
    Remove { entry: String },
}

/// Runs one suppressions command.
pub async fn run(
    args: SuppressionArgs,
    cfg: &Config,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<ExitCode> {
    let api = api_client(args.server, cfg, env)?;
    let pnid = args
        .phone_number_id
        .unwrap_or_else(|| cfg.whatsapp.phone_number_id.clone());
    if pnid.is_empty() {
        anyhow::bail!("no phone number: pass --phone-number-id or set whatsapp.phone_number_id");
    }
    let mut out = std::io::stdout();
    match args.command {
        SuppressionCommand::Export => client::suppressions_export(&api, &pnid, &mut out).await?,
        SuppressionCommand::Import { csv } => {
            let v = client::suppressions_import(&api, &pnid, &csv).await?;
            use std::io::Write as _;
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        SuppressionCommand::Remove { entry } => {
            let v = client::suppressions_remove(&api, &pnid, &entry).await?;
            use std::io::Write as _;
            writeln!(
                out,
                "{}",
                if v["removed"].as_bool() == Some(true) {
                    "removed"
                } else {
                    "was not on the list"
                }
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
