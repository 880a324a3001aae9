//! The `tickwheel` binary: parses the command line and wires; all logic lives in the library.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use tickwheel::config::Settings;
use tickwheel::startup::Application;

#[derive(Parser)]
#[command(
    name = "tickwheel",
    version,
    about = "A distributed HTTP task scheduler"
)]
struct Cli {
    /// Configuration file (default: ./config.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Print an access token for a user.
    Token {
        /// The user id the token acts for.
        #[arg(long)]
        user: i64,
        /// Grant the admin role (may act for any user).
        #[arg(long)]
        admin: bool,
        /// Lifetime: 90s, 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Probe the running service: exit 0 on a 2xx answer, non-zero otherwise.
    Healthcheck {
        /// The URL to GET (http only; default: server.bind, 0.0.0.0 read as 127.0.0.1,
        /// and /healthz).
        #[arg(long)]
        url: Option<String>,
        /// Time allowed for the whole probe (ms).
        #[arg(long, default_value_t = tickwheel::healthcheck::DEFAULT_TIMEOUT_MS)]
        timeout_ms: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Token { user, admin, ttl } => {
            let ttl =
                tickwheel::auth::parse_ttl(&ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
            let token = tickwheel::auth::issue_token(
                settings.auth.jwt_secret.expose_secret(),
                user,
                admin,
                ttl,
            )?;
            println!("{token}");
            Ok(())
        }
        Command::Healthcheck { url, timeout_ms } => {
            let url = match url {
                Some(url) => url,
                None => tickwheel::healthcheck::default_url(&settings.server.bind)?,
            };
            let healthy =
                tickwheel::healthcheck::check(&url, std::time::Duration::from_millis(timeout_ms))
                    .with_context(|| format!("healthcheck of {url} failed"))?;
            println!("healthy: {url} answered {}", healthy.status_line);
            Ok(())
        }
        Command::Migrate => {
            tickwheel::telemetry::init(&settings.log);
            actix_web::rt::System::new().block_on(async {
                tickwheel::startup::install_crypto_provider();
                // One connection: on MySQL the migrations run under a lock held by it.
                let db = tickwheel::store::connect(&settings.database.url, 1)
                    .await
                    .context("while connecting to database.url")?;
                tickwheel::store::migrate(&db)
                    .await
                    .context("while applying migrations")?;
                tracing::info!("migrations applied");
                Ok(())
            })
        }
        Command::Serve => {
            tickwheel::telemetry::init(&settings.log);
            actix_web::rt::System::new().block_on(async move {
                let app = Application::build(settings).await?;
                app.run_until_stopped().await?;
                Ok(())
            })
        }
    }
}
