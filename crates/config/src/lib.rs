//! Postamt's configuration: the TOML file's types, their defaults, and
//! validation that names the file, the key and the reason of every error.
//!
//! The key names are the user-facing contract (see `docs/configuration.md`);
//! every key is accepted even before the feature that gives it effect lands.

mod duration;
mod error;
mod model;
mod validate;

pub use duration::HumanDuration;
pub use error::ConfigError;
pub use model::*;

use std::path::Path;

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: path.display().to_string(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates configuration text; `path` is only used in errors.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let deserializer = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
        file: file.clone(),
        message: e.to_string(),
    })?;
    let mut config: Config =
        serde_path_to_error::deserialize(deserializer).map_err(|e| ConfigError::Key {
            file: file.clone(),
            key: e.path().to_string(),
            message: e.inner().message().to_string(),
        })?;
    config.source = Some(path.to_path_buf());
    validate::validate(&config).map_err(|(key, message)| ConfigError::Key {
        file,
        key,
        message,
    })?;
    Ok(config)
}
