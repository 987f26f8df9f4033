//! `herald`: parse the command line, load and validate the configuration (exit 64 when it is
//! bad), start logging and metrics, run the command until it ends or SIGINT/SIGTERM, drain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use herald::app::{self, Role, Roles};
use herald::cli::{self, campaign::CampaignArgs, suppressions::SuppressionArgs};
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
            use herald::cli::demo::{DemoEnd, DemoOptions};
            let interrupt = app::Interrupt::on_signal();
            let end = herald::cli::demo::run(&DemoOptions { mps, quiet }, interrupt.token.clone())
                .await?;
            Ok(match (end, interrupt.signal()) {
                (DemoEnd::Matched, _) => ExitCode::SUCCESS,
                (DemoEnd::Interrupted, Some(n)) => ExitCode::from(app::Interrupt::exit_code(n)),
                _ => ExitCode::from(EXIT_RUNTIME),
            })
        }
        Command::Doctor => {
            let checks = herald::cli::doctor::run(&cfg).await;
            let ok = herald::cli::doctor::print(&checks, &mut out);
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
        Command::Campaign(args) => cli::campaign::run(args, &cfg, &env).await,
        Command::Suppressions(args) => cli::suppressions::run(args, &cfg, &env).await,
    }
}

/// A long-running role until SIGINT/SIGTERM, then its drain.
async fn serve(cfg: &Config, roles: Roles) -> anyhow::Result<ExitCode> {
    if cfg.store.backend != herald::config::Backend::Memory {
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
