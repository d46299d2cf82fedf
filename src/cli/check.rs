//! `scangate check`: validates the config file and the key file the way `serve` would load them,
//! prints every error with its position, and counts the enabled and disabled tokens (and
//! connections, when there are any). It also fails on a key file others may touch, or one that
//! the gateway's presumed user cannot read (see [`crate::config::perms`]), and warns about what
//! `serve` warns about at start-up.

use std::io::{ErrorKind, Write as _};
use std::path::Path;
use std::process::ExitCode;

use super::{CliError, ConfigArg};
use crate::auth::token::{KeyError, TokenKey};
use crate::config::edit::Document;
use crate::config::{hygiene, load, LoadError};

/// `scangate check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The config file.
    #[command(flatten)]
    pub config: ConfigArg,
}

/// Checks the files: 0 and a summary on stdout when they are good, 1 and every error on stderr
/// (`scangate check: …`) when not, 64 for bad usage. Warnings (`scangate check: warning: …`) go to
/// stderr and do not fail the check.
pub fn run(args: CheckArgs) -> ExitCode {
    super::finish("check", execute(args))
}

fn execute(args: CheckArgs) -> Result<(), CliError> {
    let path = args.config.path()?;
    let mut errors: Vec<String> = Vec::new();
    let settings = match load::read_settings(path) {
        Ok((_, settings)) => Some(settings),
        Err(LoadError::Invalid(invalid)) => {
            errors.extend(invalid.0.iter().map(ToString::to_string));
            None
        }
        Err(unreadable) => return Err(unreadable.into()),
    };

    // The key file: required when UseAccessToken is 1, checked whenever it exists. With an invalid
    // config, its TokenKeyFile is still read from the text when the XML allows.
    let base = path.parent().unwrap_or(Path::new(""));
    let key_path = match &settings {
        Some(s) => Some(s.gateway.token_key_file.clone()),
        None => std::fs::read_to_string(path).ok().and_then(|text| {
            let label = path.display().to_string();
            let doc = Document::read(&text, &label).ok()?;
            Some(base.join(doc.key_file()))
        }),
    };
    let required = settings.as_ref().is_some_and(|s| s.auth.use_access_token);
    let mut warnings: Vec<String> = Vec::new();
    if let Some(key_path) = key_path {
        match TokenKey::read(&key_path) {
            Ok(_) => {}
            Err(KeyError::Read { source, .. })
                if source.kind() == ErrorKind::NotFound && !required => {}
            Err(e) => errors.push(e.to_string()),
        }
        for concern in hygiene::key_file(&key_path) {
            match concern.error {
                true => errors.push(concern.text),
                false => warnings.push(concern.text),
            }
        }
    }
    // This command reads the files as whoever runs it; the gateway may run as someone else.
    if let Some(s) = &settings {
        errors.extend(hygiene::unreadable_by_gateway(path, s));
        warnings.extend(hygiene::cleartext_tokens(s));
        warnings.extend(hygiene::deprecated(s));
    }
    for warning in &warnings {
        eprintln!("scangate check: warning: {warning}");
    }

    if let Some(s) = &settings {
        let enabled = s.auth.tokens.iter().filter(|t| t.enabled).count();
        let disabled = s.auth.tokens.len() - enabled;
        let connections = &s.auth.connections;
        let on = connections.iter().filter(|c| c.enabled).count();
        let connections = match connections.len() {
            0 => String::new(),
            all => format!("; connections: {on} enabled, {} disabled", all - on),
        };
        let auth = if s.auth.use_access_token {
            ""
        } else {
            "; UseAccessToken is 0, so no request is authenticated"
        };
        let verdict = if errors.is_empty() {
            "valid"
        } else {
            "config valid"
        };
        let summary = format!(
            "{}: {verdict}; tokens: {enabled} enabled, {disabled} disabled{connections}{auth}\n",
            path.display()
        );
        let _ = std::io::stdout().lock().write_all(summary.as_bytes());
    }
    if errors.is_empty() {
        return Ok(());
    }
    let count = errors.len();
    errors.push(format!(
        "{}: {count} error{}",
        path.display(),
        if count == 1 { "" } else { "s" }
    ));
    Err(CliError::Check(errors))
}
