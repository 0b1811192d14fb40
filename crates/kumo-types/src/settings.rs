//! A function's settings, declared once.
//!
//! The list in [`settings!`] below is the only place a setting is named.
//! From it come the three shapes the settings travel in:
//!
//! - [`FunctionSettings`]: each setting optional, as a request, a
//!   `kumo.toml` or a template gives them (absent = keep, or the default);
//! - [`Settings`]: each setting set, as a function has them (its answer in
//!   the API, and what the store keeps);
//! - [`DeployQuery`]: the flat query string of a `.tar.gz` deploy (query
//!   strings carry no nesting, and numbers only in flat structs).
//!
//! A new setting is one more line in the list, its default in
//! [`Limits::default_settings`], and, when numeric, its range in
//! [`Limits::setting_ranges`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Limits;

/// Who may call a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Anyone with its URL.
    Public,
    /// Only callers with a token that may see its project.
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Visibility::Public),
            "private" => Some(Visibility::Private),
            _ => None,
        }
    }
}

macro_rules! settings {
    ($( $(#[doc = $doc:literal])* $name:ident: $ty:ty, )*) => {
        /// Function settings; every field optional (absent = keep the
        /// current value, or the default for a new function).
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct FunctionSettings {
            $(
                $(#[doc = $doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
            )*
        }

        impl FunctionSettings {
            /// No setting given.
            pub const NONE: FunctionSettings = FunctionSettings { $( $name: None, )* };
            /// The settings' names, as the wire and `kumo.toml` spell them.
            pub const NAMES: &'static [&'static str] = &[$( stringify!($name), )*];
        }

        /// A function's settings, every one set.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        pub struct Settings {
            $(
                $(#[doc = $doc])*
                pub $name: $ty,
            )*
        }

        impl Settings {
            /// These settings with those `given` laid over them.
            pub fn with(&self, given: &FunctionSettings) -> Settings {
                Settings { $( $name: given.$name.clone().unwrap_or_else(|| self.$name.clone()), )* }
            }

            /// These settings, every one given (what `kumo pull` writes).
            pub fn given(&self) -> FunctionSettings {
                FunctionSettings { $( $name: Some(self.$name.clone()), )* }
            }
        }

        /// `POST …/deployments` of a `.tar.gz`: the code's settings, in the
        /// query string.
        #[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
        #[serde(deny_unknown_fields)]
        pub struct DeployQuery {
            /// `python` (default), `node` or `custom`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub runtime: Option<String>,
            /// The file that holds the handler.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub entrypoint: Option<String>,
            /// The handler's name in the entrypoint.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub handler: Option<String>,
            $(
                $(#[doc = $doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
            )*
        }

        impl DeployQuery {
            /// The query for code with these settings.
            pub fn new(
                runtime: Option<String>,
                entrypoint: Option<String>,
                handler: Option<String>,
                settings: &FunctionSettings,
            ) -> DeployQuery {
                DeployQuery {
                    runtime,
                    entrypoint,
                    handler,
                    $( $name: settings.$name.clone(), )*
                }
            }

            /// Its function settings.
            pub fn settings(&self) -> FunctionSettings {
                FunctionSettings { $( $name: self.$name.clone(), )* }
            }
        }
    };
}

settings! {
    /// The longest a call may run, in milliseconds.
    timeout_ms: u64,
    /// Memory per instance, in MiB.
    memory_mb: u64,
    /// Calls served at once, over all of its instances.
    concurrency: u64,
    /// CPU per instance, in thousandths of a core.
    cpu_millicores: u64,
    /// Processes and threads per instance.
    pids: u64,
    /// Size of the instance's /tmp, in MiB.
    tmp_mb: u64,
    /// `public` (anyone with the URL) or `private` (a token needed).
    visibility: Visibility,
    /// Keep credential headers (`authorization`, `cookie`,
    /// `proxy-authorization`, `x-api-key`) in the stored input of HTTP
    /// runs, for debugging; by default they are stored as `***`. Kumo's
    /// own credentials are never kept.
    record_credentials: bool,
}

impl Limits {
    /// The settings of a function that asks for none.
    pub fn default_settings(&self) -> Settings {
        Settings {
            timeout_ms: self.timeout_ms,
            memory_mb: self.memory_mb,
            concurrency: self.concurrency,
            cpu_millicores: self.cpu_millicores,
            pids: self.pids,
            tmp_mb: self.tmp_bytes / (1024 * 1024),
            visibility: Visibility::Public,
            record_credentials: false,
        }
    }

    /// `given`, refused with a message naming the first setting out of
    /// its range (the ranges the API document states).
    pub fn check_settings(&self, given: &FunctionSettings) -> Result<(), String> {
        let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(given) else {
            return Ok(());
        };
        for (name, value) in fields {
            let (Some(range), Some(value)) = (self.setting_range(&name), value.as_u64()) else {
                continue;
            };
            if value < range.min || value > range.max {
                return Err(format!(
                    "{name} must be from {} to {}, got {value}",
                    range.min, range.max
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_settings_are_laid_over_the_current_ones() {
        let current = Limits::default().default_settings();
        let given = FunctionSettings {
            memory_mb: Some(256),
            visibility: Some(Visibility::Private),
            ..FunctionSettings::NONE
        };
        let merged = current.with(&given);
        assert_eq!(merged.memory_mb, 256);
        assert_eq!(merged.visibility, Visibility::Private);
        assert_eq!(merged.timeout_ms, current.timeout_ms);
        assert_eq!(merged.given().memory_mb, Some(256));
        assert_eq!(current.with(&FunctionSettings::NONE), current);
    }

    #[test]
    fn every_numeric_setting_has_a_range_and_every_range_a_setting() {
        let limits = Limits::default();
        let defaults =
            serde_json::to_value(limits.default_settings().given()).expect("settings are JSON");
        for name in FunctionSettings::NAMES {
            let numeric = defaults[name].is_u64();
            assert_eq!(limits.setting_range(name).is_some(), numeric, "{name}");
        }
        for range in limits.setting_ranges() {
            assert!(
                FunctionSettings::NAMES.contains(&range.name),
                "{}",
                range.name
            );
            assert_eq!(defaults[range.name].as_u64(), Some(range.default));
        }
    }

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        let limits = Limits::default();
        let low = FunctionSettings {
            timeout_ms: Some(1),
            ..FunctionSettings::NONE
        };
        assert_eq!(
            limits.check_settings(&low).expect_err("too short"),
            "timeout_ms must be from 100 to 900000, got 1"
        );
        let fine = limits.default_settings().given();
        assert!(limits.check_settings(&fine).is_ok());
    }

    #[test]
    fn the_deploy_query_carries_every_setting() {
        let all = Limits::default().default_settings().given();
        let query = DeployQuery::new(Some("python".into()), None, None, &all);
        assert_eq!(query.settings(), all);
        let text = serde_json::to_string(&query).expect("a query is JSON");
        for name in FunctionSettings::NAMES {
            assert!(text.contains(name), "{name} missing from {text}");
        }
    }
}
