//! `alto-server`: the Alto management server. Parses the command line, layers the
//! configuration and runs [`alto_server::Application`] until SIGTERM or Ctrl-C.
//!
//! **Must never:** hold server logic (everything is in the library, where `TestApp` runs it),
//! or print a secret other than the bootstrap administrator's generated first password.

use std::path::PathBuf;
use std::sync::Arc;

use alto_server::config::{
    DatabaseOverrides, HttpOverrides, LinkOverrides, LogFormat, LogOverrides, Overrides,
};
use alto_server::{Application, Config};
use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Alto management server: REST API, live events, metrics, background services.
///
/// With no database URL it runs a private PostgreSQL cluster under its data directory.
/// Configuration layers: defaults, then the TOML file, then ALTO_* environment variables
/// (ALTO_HTTP__LISTEN=…, ALTO_DATABASE__URL=…), then these flags.
#[derive(Debug, Parser)]
#[command(name = "alto-server", version)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "ALTO_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, global = true)]
    listen: Option<std::net::SocketAddr>,
    /// Address of the agent link (gRPC over TLS), e.g. 127.0.0.1:8443.
    #[arg(long, global = true)]
    link_listen: Option<std::net::SocketAddr>,
    /// Data directory (embedded PostgreSQL, initial admin password).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// External PostgreSQL URL (owner rights); omit to use the embedded cluster.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Log format.
    #[arg(long, value_parser = ["text", "json"], global = true)]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Print the effective configuration (after all layers) as TOML and exit.
    PrintConfig,
    /// Print the OpenAPI document and exit.
    Openapi,
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            data_dir: self.data_dir.clone(),
            http: self.listen.map(|l| HttpOverrides { listen: Some(l) }),
            database: self.database_url.clone().map(|u| DatabaseOverrides { url: Some(u) }),
            log: self.log_format.as_deref().map(|f| LogOverrides {
                format: Some(if f == "json" { LogFormat::Json } else { LogFormat::Text }),
            }),
            link: self.link_listen.map(|l| LinkOverrides { listen: Some(l) }),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref(), &cli.overrides())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::PrintConfig => {
            let mut shown = config.clone();
            if shown.database.app_password.is_some() {
                shown.database.app_password = Some("<redacted>".into());
            }
            if shown.bootstrap.admin_password.is_some() {
                shown.bootstrap.admin_password = Some("<redacted>".into());
            }
            print!("{}", toml::to_string_pretty(&shown)?);
            Ok(())
        }
        Command::Openapi => {
            use utoipa::OpenApi as _;
            println!("{}", alto_server::http::ApiDoc::openapi().to_pretty_json()?);
            Ok(())
        }
        Command::Serve => {
            alto_server::telemetry::init_logging(&config.log);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(serve(config))
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config, Arc::new(alto_model::SystemClock))
        .await
        .context("alto-server could not start")?;
    let url = app.public_url();
    println!("Alto server listening on {url}");
    println!("  API:     {url}/api/v1  (OpenAPI: {url}/api/v1/openapi.json)");
    println!("  Metrics: {url}/metrics");
    if let Some(admin) = app.initial_admin() {
        println!("  Initial administrator: {} / {}", admin.username, admin.password);
        if let Some(f) = &admin.password_file {
            println!("  (password also saved in {}; change it after first login)", f.display());
        }
    }
    app.run(shutdown_signal()).await.context("serving HTTP")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
