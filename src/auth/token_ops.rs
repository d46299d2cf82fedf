//! The static-token operations: add, list, enable, disable, remove, describe, rotate. `scangate
//! token …` runs them and the web console calls the same functions, so both make the same
//! validated, locked, atomic edits that keep the file's comments.
//!
//! Every change runs under the config's lock: read, edit ([`Document`]), validate as `serve`
//! would, write atomically ([`ConfigFile`]). A refused change writes nothing. A token is taken as
//! an argument (the caller mints it or reads it) and only its keyed digest is written. Every
//! operation blocks (file lock, fsync), so async callers run them on a blocking thread.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::auth::token::{check_plaintext, encode_value, mint, KeyError, TokenKey};
use crate::config::edit::{check_new_name, ConfigFile, Document, EditError, EntryKind, NewToken};
use crate::config::perms::Access;
use crate::config::validate::{check_description, check_tenant};
use crate::config::{load, Limits, LoadError, Role};

const TOKEN: EntryKind = EntryKind::Token;

/// What `add` writes, but the Value, which comes from the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// `Name`: 1–40 characters, unique across Tokens and Connections.
    pub name: String,
    /// Up to 1000 characters; empty or `None` writes none.
    pub description: Option<String>,
    /// `Enabled`.
    pub enabled: bool,
    /// `Role`; none means full access.
    pub role: Option<Role>,
    /// Tenants, sent upstream in X-Scangate-Tenants.
    pub tenants: Vec<String>,
    /// `RateLimit`: its own limits; `None` writes none (the defaults apply).
    pub limits: Option<Limits>,
}

/// Which input was refused, so a caller can name its own field (`--tenant`, a form field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenField {
    /// The Name.
    Name,
    /// The description.
    Description,
    /// A tenant.
    Tenant,
    /// A supplied token that breaks Scan Engine's plaintext rules.
    Token,
}

/// Why a token operation did nothing.
#[derive(Debug, thiserror::Error)]
pub enum TokenOpError {
    /// An input breaks the config's rule; the text is the rule (never the token).
    #[error("{rule}")]
    BadInput {
        /// Which input.
        field: TokenField,
        /// The rule it broke.
        rule: String,
    },
    /// The edit was refused or could not be written.
    #[error(transparent)]
    Edit(#[from] EditError),
    /// The config could not be read or is invalid.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The key file is unreadable or malformed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// No key file, but Values made with some key are already in the config: a new key would make
    /// every one of those tokens fail.
    #[error(
        "{}: token key file is missing, but the config already holds {tokens} token(s) hashed \
         with a key; restore that key file rather than create a new one",
        path.display()
    )]
    KeyMissing {
        /// The key file.
        path: PathBuf,
        /// How many Tokens the config holds.
        tokens: usize,
    },
}

impl TokenOpError {
    /// The caller's input is at fault (bad value, unknown or taken name): the CLI exits 64.
    pub fn is_usage(&self) -> bool {
        match self {
            TokenOpError::BadInput { .. } => true,
            TokenOpError::Edit(e) => e.is_usage(),
            _ => false,
        }
    }
}

fn bad(field: TokenField) -> impl FnOnce(String) -> TokenOpError {
    move |rule| TokenOpError::BadInput { field, rule }
}

/// What `add` did. Holds the new token, so its Debug leaves it out.
pub struct TokenAdded {
    /// The token, to be shown once; only its digest was written.
    pub token: String,
    /// The key file and the access it was given, when `add` had to create it.
    pub key_created: Option<(PathBuf, Access)>,
    /// The config's owner, group and mode, to compare with the new key file's.
    pub config_access: Option<Access>,
    /// `UseAccessToken`: with 0, no request is checked.
    pub use_access_token: bool,
}

impl std::fmt::Debug for TokenAdded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAdded")
            .field("key_created", &self.key_created)
            .field("use_access_token", &self.use_access_token)
            .finish_non_exhaustive()
    }
}

/// `supplied` checked against Scan Engine's plaintext rules, or a minted token. The error never
/// quotes the token.
pub fn supplied_or_mint(supplied: Option<String>) -> Result<String, TokenOpError> {
    match supplied {
        None => Ok(mint()),
        Some(token) => {
            check_plaintext(&token).map_err(|e| bad(TokenField::Token)(e.to_string()))?;
            Ok(token)
        }
    }
}

/// Checks `spec` as the validator will, so a bad input is named as such. `add` runs it first;
/// the CLI runs it before it reads a token from stdin.
pub fn check(spec: &TokenSpec) -> Result<(), TokenOpError> {
    check_new_name(&spec.name).map_err(bad(TokenField::Name))?;
    if let Some(description) = &spec.description {
        check_description(description).map_err(bad(TokenField::Description))?;
    }
    for tenant in &spec.tenants {
        check_tenant(tenant).map_err(bad(TokenField::Tenant))?;
    }
    Ok(())
}

/// Adds a Token holding the keyed digest of `supplied`, or of a minted token when `None`, and
/// returns the token. Creates the key file (mode 0600, readable by whoever reads the config) when
/// it is missing and the file holds no Token yet.
pub fn add(
    config: &Path,
    spec: &TokenSpec,
    supplied: Option<String>,
) -> Result<TokenAdded, TokenOpError> {
    check(spec)?;
    let token = supplied_or_mint(supplied)?;
    let file = ConfigFile::open(config)?;
    let label = config.display().to_string();
    let doc = Document::read(file.text(), &label)?;
    let key_path = file.resolve(&doc.key_file());
    let (key, new_key) = TokenKey::read_or_new(&key_path)?;
    // A new key would orphan every Value already in the file: all those clients would get 401.
    if new_key.is_some() && doc.token_count() > 0 {
        return Err(TokenOpError::KeyMissing {
            path: key_path,
            tokens: doc.token_count(),
        });
    }
    let new = NewToken {
        name: spec.name.clone(),
        value: key.value(&token),
        description: spec.description.clone().filter(|d| !d.is_empty()),
        enabled: spec.enabled,
        role: spec.role,
        tenants: spec.tenants.clone(),
        limits: spec.limits.clone(),
    };
    let text = doc.add(&new)?;
    let settings = file.validate(&text)?;
    let config_access = std::fs::metadata(config).map(|m| Access::of(&m)).ok();
    let created = match &new_key {
        Some(new_key) => Some(new_key.write(&key_path, config_access)?),
        None => None,
    };
    if let Err(e) = file.replace(&text) {
        // A refused add leaves no key behind: the next `add` may then create one.
        if created.is_some() {
            let _ = std::fs::remove_file(&key_path);
        }
        return Err(e.into());
    }
    Ok(TokenAdded {
        token,
        key_created: created.map(|got| (key_path, got)),
        config_access,
        use_access_token: settings.auth.use_access_token,
    })
}

/// Replaces the Token's Value with the digest of `supplied` (or of a minted token) and returns
/// the token; name, state, role, tenants and description stay. The old token stops working when
/// the gateway reloads.
pub fn rotate(config: &Path, name: &str, supplied: Option<String>) -> Result<String, TokenOpError> {
    let token = supplied_or_mint(supplied)?;
    ConfigFile::edit(config, |file, doc| {
        let key = TokenKey::read(&file.resolve(&doc.key_file()))?;
        Ok::<_, TokenOpError>(Some(doc.set_value(name, &key.value(&token))?))
    })?;
    Ok(token)
}

/// Sets `Enabled`; false when it already had that value (nothing was written).
pub fn set_enabled(config: &Path, name: &str, enabled: bool) -> Result<bool, TokenOpError> {
    let written = ConfigFile::edit(config, |_, doc| {
        Ok::<_, TokenOpError>(doc.set_enabled(TOKEN, name, enabled)?)
    })?;
    Ok(written.is_some())
}

/// Removes the Token.
pub fn remove(config: &Path, name: &str) -> Result<(), TokenOpError> {
    ConfigFile::edit(config, |_, doc| {
        Ok::<_, TokenOpError>(Some(doc.remove(TOKEN, name)?))
    })?;
    Ok(())
}

/// Sets the Token's description; an empty one removes it.
pub fn describe(config: &Path, name: &str, description: &str) -> Result<(), TokenOpError> {
    check_description(description).map_err(bad(TokenField::Description))?;
    ConfigFile::edit(config, |_, doc| {
        Ok::<_, TokenOpError>(Some(doc.set_description(TOKEN, name, description)?))
    })?;
    Ok(())
}

/// Sets the Token's Role; `None` removes it (full access).
pub fn set_role(config: &Path, name: &str, role: Option<Role>) -> Result<(), TokenOpError> {
    ConfigFile::edit(config, |_, doc| {
        let text = match role {
            Some(role) => doc.set(TOKEN, name, &[("Role", role.as_str())])?,
            None => doc.remove_child(TOKEN, name, "Role")?,
        };
        Ok::<_, TokenOpError>(Some(text))
    })?;
    Ok(())
}

/// Replaces the Token's tenants; none removes `Tenants`.
pub fn set_tenants(config: &Path, name: &str, tenants: &[String]) -> Result<(), TokenOpError> {
    for tenant in tenants {
        check_tenant(tenant).map_err(bad(TokenField::Tenant))?;
    }
    ConfigFile::edit(config, |_, doc| {
        Ok::<_, TokenOpError>(Some(doc.set_tenants(TOKEN, name, tenants, false)?))
    })?;
    Ok(())
}

/// One Token as `list` shows it; the `token list --json` objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenListed {
    /// `Name`.
    pub name: String,
    /// `Enabled`.
    pub enabled: bool,
    /// `Description`.
    pub description: Option<String>,
    /// `Role`.
    pub role: Option<&'static str>,
    /// Tenants.
    pub tenants: Vec<String>,
    /// The first 8 characters of the Value: enough to tell tokens apart, useless to an attacker.
    pub fingerprint: String,
    /// The limits in force (its own `RateLimit`, else the defaults), e.g. `5/s burst 5, 1000/day`;
    /// `-` when unlimited.
    pub limits: String,
}

/// Every Token of the config, in file order. Never a token: the file holds digests.
pub fn list(config: &Path) -> Result<Vec<TokenListed>, TokenOpError> {
    let (_, settings) = load::read_settings(config)?;
    Ok((settings.auth.tokens.iter())
        .map(|t| TokenListed {
            name: t.name.to_string(),
            enabled: t.enabled,
            description: t.description.clone(),
            role: t.role.map(Role::as_str),
            tenants: t.tenants.clone(),
            fingerprint: encode_value(&t.digest)[..8].to_owned(),
            limits: t
                .limits
                .as_deref()
                .map_or_else(|| "-".to_owned(), Limits::summary),
        })
        .collect())
}
