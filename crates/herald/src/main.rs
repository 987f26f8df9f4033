//! `herald`: parse the command line, load and validate the configuration (exit 64 when it is
//! bad), start logging and metrics, run the command until it ends or SIGINT/SIGTERM, drain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use herald::app::{self, Role, Roles};
use herald::client::{self, ApiClient, Create};
use herald::config::Config;

/// Bulk WhatsApp Cloud API broadcasts: paced, crash-safe, exactly counted.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about)]
struct Cli {
    /// The configuration file (default: config/herald.toml when it exists).
    #[arg(long, global = true, value_name = "PATH", env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// API, webhook receiver, reconciler and sender workers in one process, or the roles
    /// named with --role.
    Serve {
        /// Run only these roles (repeatable): api, webhook, reconciler, sender.
        #[arg(long = "role", value_enum)]
        roles: Vec<Role>,
    },
    /// Sender workers only (run several to scale out).
    Worker,
    /// Webhook receiver and reconciler only.
    Webhook,
    /// The Cloud API simulator.
    Sim(SimArgs),
    /// Simulator and server in one process, a sample campaign, live progress, final stats.
    Demo {
        /// Messages per second (the simulator enforces the same limit).
        #[arg(long, default_value_t = 80)]
        mps: u32,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Campaigns, through the HTTP API.
    Campaign(CampaignArgs),
    /// A phone number's suppression list: export, import, remove an entry.
    Suppressions(SuppressionArgs),
    /// Checks the token, the phone number, the webhook subscription and the store.
    Doctor,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Loads and validates the configuration and prints the effective settings
    /// (secrets redacted).
    Check,
}

#[derive(Debug, Args)]
struct SimArgs {
    /// The simulator's own TOML settings (see crates/sim/src/config.rs).
    #[arg(long = "sim-config", value_name = "PATH")]
    sim_config: Option<PathBuf>,
    #[arg(long)]
    listen: Option<String>,
    #[arg(long)]
    seed: Option<u64>,
    /// Throughput of every simulated phone number (130429 beyond).
    #[arg(long)]
    mps: Option<u32>,
    /// Where status webhooks go (e.g. http://127.0.0.1:8080/webhook).
    #[arg(long)]
    webhook_url: Option<String>,
    #[arg(long)]
    latency_ms: Option<u64>,
    #[arg(long)]
    jitter_ms: Option<u64>,
}

#[derive(Debug, Args)]
struct CampaignArgs {
    /// Herald's address (default: from server.listen).
    #[arg(long, global = true)]
    server: Option<String>,
    #[command(subcommand)]
    command: CampaignCommand,
}

#[derive(Debug, clap::Args)]
struct SuppressionArgs {
    /// Herald's address (default: from server.listen).
    #[arg(long, global = true)]
    server: Option<String>,
    /// The phone number whose list it is (default: whatsapp.phone_number_id).
    #[arg(long, global = true)]
    phone_number_id: Option<String>,
    #[command(subcommand)]
    command: SuppressionCommand,
}

#[derive(Debug, Subcommand)]
enum SuppressionCommand {
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

#[derive(Debug, Subcommand)]
enum CampaignCommand {
    /// Creates a campaign and uploads its recipients.
    Create {
        #[arg(long)]
        name: String,
        /// A Cloud API message body (without `to`), with {{column}} placeholders.
        #[arg(long, value_name = "JSON_FILE")]
        message: PathBuf,
        #[arg(long, value_name = "CSV_FILE")]
        csv: PathBuf,
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
        /// Start sending at once.
        #[arg(long)]
        start: bool,
    },
    Start {
        id: String,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    Cancel {
        id: String,
    },
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
    List,
    /// CSV of failed and skipped recipients with reasons.
    Failures {
        id: String,
    },
}

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let path = cli.config.clone().or_else(|| {
        let default = Path::new("config/herald.toml");
        default.exists().then(|| default.to_owned())
    });
    // The demo and the simulator need no configuration at all.
    let needs_config = !matches!(cli.command, Command::Demo { .. } | Command::Sim(_));
    let cfg = if needs_config {
        match Config::load(path.as_deref(), &env) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("herald: bad configuration: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    } else {
        let mut c = Config::default();
        if matches!(cli.command, Command::Demo { .. }) {
            // The demo draws its own progress; only problems are logged.
            c.log.level = "warn".into();
        }
        c
    };
    herald::telemetry::init_tracing(&cfg.log);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    match rt.block_on(run(cli, cfg, env)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herald: {e:#}");
            let config = e.downcast_ref::<herald::config::ConfigError>().is_some();
            ExitCode::from(if config { EXIT_CONFIG } else { EXIT_RUNTIME })
        }
    }
}

async fn run(cli: Cli, cfg: Config, env: BTreeMap<String, String>) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout();
    match cli.command {
        Command::Serve { roles } => serve(&cfg, Roles::of(&roles)).await,
        Command::Worker => serve(&cfg, Roles::WORKER).await,
        Command::Webhook => serve(&cfg, Roles::WEBHOOK).await,
        Command::Sim(args) => sim(args).await,
        Command::Demo { mps, quiet } => {
            use herald::demo::{DemoEnd, DemoOptions};
            let interrupt = app::Interrupt::on_signal();
            let end =
                herald::demo::run(&DemoOptions { mps, quiet }, interrupt.token.clone()).await?;
            Ok(match (end, interrupt.signal()) {
                (DemoEnd::Matched, _) => ExitCode::SUCCESS,
                (DemoEnd::Interrupted, Some(n)) => ExitCode::from(app::Interrupt::exit_code(n)),
                _ => ExitCode::from(EXIT_RUNTIME),
            })
        }
        Command::Doctor => {
            let checks = herald::doctor::run(&cfg).await;
            let ok = herald::doctor::print(&checks, &mut out);
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_RUNTIME)
            })
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            use std::io::Write as _;
            writeln!(out, "{}", cfg.redacted_toml())?;
            for w in cfg.warnings() {
                writeln!(out, "# warning: {w}")?;
            }
            writeln!(out, "# configuration ok")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Campaign(args) => campaign(args, &cfg, &env).await,
        Command::Suppressions(args) => suppressions(args, &cfg, &env).await,
    }
}

/// A long-running role until SIGINT/SIGTERM, then its drain.
async fn serve(cfg: &Config, roles: Roles) -> anyhow::Result<ExitCode> {
    if cfg.store.backend == herald::config::Backend::Redis {
        cfg.redis_url()?;
    }
    let stop = app::shutdown_on_signal();
    let listener = app::bind(cfg, roles).await?;
    app::run(cfg, roles, listener, stop).await?;
    Ok(ExitCode::SUCCESS)
}

async fn sim(args: SimArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = match &args.sim_config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?;
            herald_sim::SimConfig::from_toml(&text).map_err(|e| herald::config::ConfigError {
                key: p.display().to_string(),
                problem: e.to_string(),
            })?
        }
        None => herald_sim::SimConfig::default(),
    };
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    if let Some(m) = args.mps {
        for n in &mut cfg.phone_numbers {
            n.mps = m;
        }
    }
    if let Some(u) = args.webhook_url {
        cfg.webhooks.url = u;
    }
    if let Some(l) = args.latency_ms {
        cfg.faults.latency_ms = l;
    }
    if let Some(j) = args.jitter_ms {
        cfg.faults.jitter_ms = j;
    }
    let stop = app::shutdown_on_signal();
    let sim = herald_sim::Sim::start(cfg.clone()).await?;
    tracing::info!(
        url = %sim.url(),
        phone_number_id = %cfg.phone_numbers.first().map(|p| p.id.as_str()).unwrap_or(""),
        webhooks = %cfg.webhooks.url,
        "simulator listening"
    );
    // Scripts read the address from the first line of stdout.
    {
        use std::io::Write as _;
        let mut out = std::io::stdout();
        writeln!(out, "{}", sim.url())?;
        out.flush()?;
    }
    stop.cancelled().await;
    sim.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// A client of the API at `--server` (else `server.listen`), with the API key.
fn api_client(
    server: Option<String>,
    cfg: &Config,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<ApiClient> {
    let server = server.unwrap_or_else(|| {
        let listen = cfg.server.listen.replace("0.0.0.0", "127.0.0.1");
        format!("http://{listen}")
    });
    let key = env
        .get("HERALD_API_KEY")
        .cloned()
        .or_else(|| Some(cfg.server.api_key.expose().to_owned()));
    ApiClient::new(&server, key)
}

async fn suppressions(
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

async fn campaign(
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
            default_region,
            phone_number_id,
            mps,
            schedule_at,
            start,
        } => {
            client::create(
                &api,
                &Create {
                    name: &name,
                    message: &message,
                    csv: &csv,
                    default_region: default_region.as_deref(),
                    phone_number_id: phone_number_id.as_deref(),
                    mps,
                    schedule_at: schedule_at.as_deref(),
                    start,
                    quiet: false,
                },
                &mut out,
            )
            .await?;
        }
        CampaignCommand::Start { id } => action(&api, &id, "start", &mut out).await?,
        CampaignCommand::Pause { id } => action(&api, &id, "pause", &mut out).await?,
        CampaignCommand::Resume { id } => action(&api, &id, "resume", &mut out).await?,
        CampaignCommand::Cancel { id } => action(&api, &id, "cancel", &mut out).await?,
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
        CampaignCommand::List => client::print_list(&api.get("/campaigns").await?, &mut out)?,
        CampaignCommand::Failures { id } => client::failures(&api, &id, &mut out).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn action(
    api: &ApiClient,
    id: &str,
    verb: &str,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let c = api.post(&format!("/campaigns/{id}/{verb}"), None).await?;
    writeln!(
        out,
        "campaign {id} is {}",
        c["status"].as_str().unwrap_or("?")
    )?;
    Ok(())
}
