//! Configuration from the environment (DESIGN §12), with the documented development defaults.

use fsync_protocol::jwt::{self, Claims, Secret};
use std::path::PathBuf;

/// The JWT secret when `FSYNC_JWT_SECRET` is unset: the Supabase CLI's local development secret.
/// Never use it outside development.
pub const DEV_JWT_SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";
/// The default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:54321";
/// Where `serve` keeps local state (a private cluster, local storage) by default.
pub const DEFAULT_STATE_DIR: &str = ".fsync";

/// Fixed issue and expiry times of the printed API keys, so one secret always gives the same
/// anon and service_role keys (as `supabase start` prints the same keys every time).
const KEY_IAT: u64 = 1_700_000_000;
const KEY_EXP: u64 = 2_000_000_000;

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`; `None` means: the machine's server on 127.0.0.1:5432, else a private one.
    pub database_url: Option<String>,
    /// `FSYNC_JWT_SECRET`.
    pub jwt_secret: Secret,
    /// Whether the secret is the development default.
    pub jwt_secret_is_default: bool,
    /// `FSYNC_STATE_DIR` (default `./.fsync`).
    pub state_dir: PathBuf,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Config {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Config {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let secret = non_empty("FSYNC_JWT_SECRET");
        Config {
            database_url: non_empty("DATABASE_URL"),
            jwt_secret_is_default: secret.is_none(),
            jwt_secret: Secret::new(secret.unwrap_or_else(|| DEV_JWT_SECRET.to_owned())),
            state_dir: non_empty("FSYNC_STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        }
    }
}

/// The project's anon key for `secret`.
pub fn anon_key(secret: &Secret) -> String {
    api_key(secret, "anon")
}

/// The project's service_role key for `secret`.
pub fn service_role_key(secret: &Secret) -> String {
    api_key(secret, "service_role")
}

fn api_key(secret: &Secret, role: &str) -> String {
    let mut claims: Claims = jwt::claims_for(role, KEY_IAT, KEY_EXP - KEY_IAT);
    claims.insert("iss".into(), "supabase-demo".into());
    jwt::sign(secret, &claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let config = Config::from_lookup(|_| None);
        assert!(config.jwt_secret_is_default);
        assert_eq!(config.jwt_secret.expose(), DEV_JWT_SECRET);
        assert_eq!(config.database_url, None);
        assert_eq!(config.state_dir, PathBuf::from(".fsync"));

        let config = Config::from_lookup(|name| match name {
            "FSYNC_JWT_SECRET" => Some("s".repeat(40)),
            "DATABASE_URL" => Some("postgres://x/y".into()),
            _ => None,
        });
        assert!(!config.jwt_secret_is_default);
        assert_eq!(config.database_url.as_deref(), Some("postgres://x/y"));
    }

    #[test]
    fn keys_are_stable_for_a_secret() {
        let secret = Secret::new(DEV_JWT_SECRET);
        assert_eq!(anon_key(&secret), anon_key(&secret));
        let claims = jwt::verify(&secret, &service_role_key(&secret), KEY_IAT + 1).unwrap();
        assert_eq!(claims["role"], "service_role");
    }
}
