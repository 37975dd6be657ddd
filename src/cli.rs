//! The command line: `serve` (the default), `migrate`, `create-admin`, `demo`, `reseal`,
//! `openapi`.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use secrecy::{ExposeSecret, SecretString};

use crate::config::Config;
use crate::db::{self, MigrationAction};
use crate::startup::Application;
use crate::{demo, email, openapi, telemetry, users};

#[derive(Debug, Parser)]
#[command(
    name = "registrar",
    version,
    about = "Event and business-session registration API"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (the default): creates the database and applies migrations first.
    Serve,
    /// Apply pending migrations, then exit.
    Migrate {
        /// Revert every migration, then apply them all again (checks every `down.sql`).
        #[arg(long, conflicts_with = "revert_all")]
        redo: bool,
        /// Revert every migration.
        #[arg(long)]
        revert_all: bool,
    },
    /// Create an admin account. The password is read from standard input when it is not a
    /// terminal, and prompted for otherwise; never from the command line.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Administrator")]
        name: String,
    },
    /// Load the demonstration event (VII Murmansk International Business Week) with its
    /// programme and registrations; does nothing when it exists already.
    Demo {
        /// Delete the demo event, registrations included, and create it again.
        #[arg(long)]
        reset: bool,
        /// Email of an existing account to make the event's owner (admins manage it anyway).
        #[arg(long)]
        owner: Option<String>,
    },
    /// Seal every secret stored in the database again with the first key of
    /// REGISTRAR_ENCRYPTION_KEYS (after putting a new key first), then exit.
    Reseal,
    /// Print the OpenAPI document.
    Openapi,
}

pub async fn run() -> ExitCode {
    // `--help` names each setting's variable but never shows its value: an unset one would
    // read `[env: REGISTRAR_BIND=]`, and a set one may be a secret.
    let command = Cli::command().mut_args(|arg| arg.hide_env_values(true));
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|error| error.exit());
    telemetry::init(cli.config.log_format());
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    let url = config.database_url.expose_secret().to_owned();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(config.clone()).await?;
            tracing::info!(port = app.port(), bind = %config.bind, database = %config.database_url_for_display(), "registrar is serving");
            app.run_until_stopped().await?;
            tracing::info!("stopped");
        }
        Command::Migrate { redo, revert_all } => {
            db::ensure_database(&url).await?;
            let action = match (redo, revert_all) {
                (true, _) => MigrationAction::Redo,
                (_, true) => MigrationAction::RevertAll,
                _ => MigrationAction::Run,
            };
            let count = db::migrate(&url, action).await?;
            if action != MigrationAction::RevertAll {
                email::bring_to_rule(&url).await?;
            }
            println!(
                "{count} migration(s) {}",
                if revert_all { "reverted" } else { "applied" }
            );
        }
        Command::CreateAdmin { email, name } => {
            db::ensure_database(&url).await?;
            db::migrate(&url, MigrationAction::Run).await?;
            email::bring_to_rule(&url).await?;
            let password = read_password()?;
            let mut conn = AsyncPgConnection::establish(&url)
                .await
                .context("connecting to the database")?;
            let user = users::create_admin(&mut conn, &email, &name, password).await?;
            println!("created admin {} ({})", user.email, user.id);
        }
        Command::Demo { reset, owner } => {
            match demo::load(&config, &demo::Options { reset, owner }).await? {
                demo::Outcome::Exists { event_id } => println!(
                    "the demo event {} exists already ({event_id}); run with --reset to recreate it",
                    demo::SLUG
                ),
                demo::Outcome::Created(summary) => println!("{summary}"),
            }
        }
        Command::Reseal => {
            let count = crate::startup::reseal_secrets(&config).await?;
            println!("{count} secret(s) sealed again with the current key");
        }
        Command::Openapi => print!("{}", openapi::to_json(&openapi::document())),
    }
    Ok(())
}

fn read_password() -> anyhow::Result<SecretString> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Repeat the password: ")?;
        anyhow::ensure!(first == second, "the passwords differ");
        Ok(first.into())
    } else {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading the password from standard input")?;
        let password = input.trim_end_matches(['\r', '\n']).to_owned();
        anyhow::ensure!(!password.is_empty(), "no password on standard input");
        Ok(password.into())
    }
}
