//! `log_format` (`VELLUM_LOG_FORMAT`): how operational log lines are
//! written to stdout. `text` for people, `json` (one object per line) for
//! log shippers.

use super::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(ConfigError::Invalid {
                key: "log_format",
                reason: format!("`{other}` is not `text` or `json`"),
            }),
        }
    }
}
