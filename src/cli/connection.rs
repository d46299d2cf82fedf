//! `scangate connection add|list|refresh|enable|disable|remove|revoke`: MDR API connections in
//! place, as MDR's console manages them. The work is in [`crate::auth::connections::ops`], which
//! the web console calls too; this module parses arguments and prints.
//!
//! Output contract, as for `token`: a refresh token goes to stdout, alone on its line (or inside
//! the `--json` object), and nowhere else; every human message goes to stderr.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use super::{columns, CliError, ConfigArg};
use crate::auth::connections::ops::{self, ConnectionError, ConsoleToken, Field, Listed, Spec};
use crate::config::validate::connections::{format_time, now_secs};
use crate::config::validate::parse_role;
use crate::config::Role;

/// `scangate connection …`. No Debug: `add` and `refresh` hold a refresh token.
#[derive(clap::Args)]
pub struct ConnectionArgs {
    /// The config file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// What to do.
    #[command(subcommand)]
    pub command: ConnectionCommand,
}

/// The connection subcommands.
#[derive(clap::Subcommand)]
pub enum ConnectionCommand {
    /// Add an API connection and print its first refresh token once, on stdout.
    Add(AddArgs),
    /// List the connections: name, client ID, role, tenants, status, last exchange. Never a token.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a new refresh token once, on stdout; every token issued before stops working when
    /// the gateway reloads (MDR's console "Refresh"). Clears a revoke.
    Refresh {
        /// The connection's Name.
        name: String,
        /// Print {"name","client_id","refresh_token","expires_at"} instead of the bare token.
        #[arg(long)]
        json: bool,
    },
    /// Enable a connection: its tokens work again (unless it was revoked or refreshed since).
    Enable {
        /// The connection's Name.
        name: String,
    },
    /// Disable a connection: its tokens get 401 and invalid_grant after the gateway reloads.
    Disable {
        /// The connection's Name.
        name: String,
    },
    /// Remove a connection: its tokens get 401 and invalid_grant after the gateway reloads.
    Remove {
        /// The connection's Name.
        name: String,
    },
    /// Revoke every token the connection issued (after the gateway reloads); `refresh` issues a
    /// new one.
    Revoke {
        /// The connection's Name.
        name: String,
    },
}

/// `connection add`.
#[derive(clap::Args)]
pub struct AddArgs {
    /// Unique across tokens and connections, 1 to 40 characters (MDR's author_name).
    #[arg(long)]
    pub name: String,
    /// Administrator, SeniorSecurityOfficer or SecurityOfficer. The default is the least
    /// privilege: scans and the liveness calls only.
    #[arg(long, value_name = "ROLE", value_parser = parse_role, default_value = "SecurityOfficer")]
    pub role: Role,
    /// A tenant in the connection's scope, sent upstream in X-Scangate-Tenants; repeat for
    /// several.
    #[arg(long = "tenant", value_name = "TENANT")]
    pub tenants: Vec<String>,
    /// Add MDR's "Root without tenants" (assets of no tenant) to the scope, sent upstream as
    /// X-Scangate-Root-Tenant: 1.
    #[arg(long)]
    pub root_tenant: bool,
    /// Up to 1000 characters.
    #[arg(long)]
    pub description: Option<String>,
    /// Print {"name","client_id","refresh_token","expires_at"} instead of the bare token.
    #[arg(long)]
    pub json: bool,
    /// Its own limits (a RateLimit element); none given: the defaults apply.
    #[command(flatten)]
    pub limits: super::limits::LimitArgs,
}

/// Runs one connection subcommand: 0 on success, 1 for an invalid file or key or a failed
/// write, 64 for bad usage. Failures go to stderr as `scangate connection: …`.
pub fn run(args: ConnectionArgs) -> ExitCode {
    super::finish("connection", execute(args))
}

fn execute(args: ConnectionArgs) -> Result<(), CliError> {
    let path = args.config.path()?;
    match args.command {
        ConnectionCommand::Add(add_args) => add(path, add_args),
        ConnectionCommand::List { json } => list(path, json),
        ConnectionCommand::Refresh { name, json } => {
            let refreshed = ops::refresh(path, &name, now_secs()).map_err(cli_error)?;
            print_token(&refreshed.token, json)?;
            eprintln!(
                "refreshed connection {name:?}: every token issued before stops working when the \
                 gateway reloads"
            );
            describe_token(&refreshed.token);
            if !refreshed.enabled {
                eprintln!(
                    "note: connection {name:?} is disabled: the new token works once it is enabled"
                );
            }
            Ok(())
        }
        ConnectionCommand::Enable { name } => set_enabled(path, &name, true),
        ConnectionCommand::Disable { name } => set_enabled(path, &name, false),
        ConnectionCommand::Remove { name } => {
            ops::remove(path, &name).map_err(cli_error)?;
            eprintln!(
                "removed connection {name:?}: its tokens stop working when the gateway reloads"
            );
            Ok(())
        }
        ConnectionCommand::Revoke { name } => {
            ops::revoke(path, &name, now_secs()).map_err(cli_error)?;
            eprintln!(
                "revoked connection {name:?}: its tokens stop working when the gateway reloads; \
                 `scangate connection refresh {name}` issues a new one"
            );
            Ok(())
        }
    }
}

/// A bad input names the flag it came from; everything else keeps its own words.
fn cli_error(e: ConnectionError) -> CliError {
    match e {
        ConnectionError::BadInput { field, rule } => {
            let flag = match field {
                Field::Name => "--name",
                Field::Tenant => "--tenant",
                Field::Description => "--description",
            };
            CliError::Usage(format!("{flag}: {rule}"))
        }
        ConnectionError::Edit(e) => CliError::Edit(e),
        ConnectionError::Load(e) => CliError::Load(e),
        ConnectionError::Key(e) => CliError::Key(e),
        other => CliError::Connection(other),
    }
}

fn add(path: &Path, args: AddArgs) -> Result<(), CliError> {
    let spec = Spec {
        name: args.name,
        role: args.role,
        tenants: args.tenants,
        root_tenant: args.root_tenant,
        description: args.description,
        limits: args.limits.limits(),
    };
    let added = ops::add(path, &spec, now_secs()).map_err(cli_error)?;
    if let Some(key) = &added.key_created {
        eprintln!("created token key file {} (mode 0600)", key.display());
    }
    print_token(&added.token, args.json)?;
    let scope = tenants(&spec.tenants, spec.root_tenant);
    eprintln!(
        "added connection {:?} ({}, tenants: {scope}) to {}",
        spec.name,
        spec.role.as_str(),
        path.display()
    );
    describe_token(&added.token);
    if !added.use_access_token {
        eprintln!(
            "note: UseAccessToken is 0 in {}: no request is checked until it is 1",
            path.display()
        );
    }
    Ok(())
}

/// The token (or the `--json` object) on stdout: the one thing these commands print there.
fn print_token(token: &ConsoleToken, json: bool) -> Result<(), CliError> {
    let text = if json {
        serde_json::to_string_pretty(token).expect("plain data serialises")
    } else {
        token.refresh_token.clone()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|source| CliError::RefreshTokenNotPrinted {
            name: token.name.clone(),
            source,
        })
}

/// What a client needs besides the token, on stderr.
fn describe_token(token: &ConsoleToken) {
    let id = &token.client_id;
    eprintln!("client ID: {id}");
    eprintln!(
        "the refresh token is shown once; exchange it before {} at POST /api/v1/{id}/session/confirm",
        format_time(token.expires_at)
    );
}

fn set_enabled(path: &Path, name: &str, enabled: bool) -> Result<(), CliError> {
    let toggled = ops::set_enabled(path, name, enabled).map_err(cli_error)?;
    let state = if enabled { "enabled" } else { "disabled" };
    match (toggled.changed, enabled) {
        (false, _) => eprintln!("connection {name:?} is already {state}; nothing to do"),
        (true, true) => eprintln!("enabled connection {name:?}"),
        (true, false) => eprintln!(
            "disabled connection {name:?}: its tokens stop working when the gateway reloads"
        ),
    }
    if enabled && toggled.revoked {
        eprintln!(
            "note: connection {name:?} is revoked: `scangate connection refresh {name}` issues a \
             new token"
        );
    }
    Ok(())
}

/// Tenants as `list` and `add` show them, "Root without tenants" spelled out.
fn tenants(named: &[String], root: bool) -> String {
    let mut all: Vec<&str> = named.iter().map(String::as_str).collect();
    if root {
        all.push("Root without tenants");
    }
    if all.is_empty() {
        return "-".to_owned();
    }
    all.join(",")
}

fn list(path: &Path, json: bool) -> Result<(), CliError> {
    let listing = ops::list(path).map_err(cli_error)?;
    if let Some(warning) = &listing.store_warning {
        eprintln!(
            "scangate connection: warning: {warning}; statuses say \"enabled\" where \"active\" \
             and \"pending activation\" cannot be told apart"
        );
    }
    let text = if json {
        let mut text =
            serde_json::to_string_pretty(&listing.connections).expect("plain data serialises");
        text.push('\n');
        text
    } else {
        table(&listing.connections)
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(CliError::Stdout)
}

/// Aligned columns, description last since it is the long one.
fn table(rows: &[Listed]) -> String {
    let header = [
        "NAME",
        "CLIENT ID",
        "ROLE",
        "TENANTS",
        "STATUS",
        "LAST EXCHANGE",
        "LIMITS",
        "DESCRIPTION",
    ];
    let cells = rows.iter().map(|r| {
        [
            r.name.clone(),
            r.client_id.clone(),
            r.role.as_str().to_owned(),
            tenants(&r.tenants, r.root_tenant),
            r.status.as_str().to_owned(),
            r.last_exchange.map_or_else(|| "-".to_owned(), format_time),
            r.limits.clone(),
            r.description.clone().unwrap_or_default(),
        ]
    });
    columns(header, cells)
}
