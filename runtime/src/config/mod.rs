//! The one configuration loader of Berth's services: the struct's defaults, then a TOML file,
//! then `BERTH_<FIELD>` environment variables (the field name in upper case), on `figment`.
//! The fields are read off the struct itself, so a new field gets its variable without a
//! list to keep in step. Values from the environment are text and become numbers, booleans,
//! durations or addresses as the field's type asks. Every error names the key and where its
//! value came from (the file or the variable).

mod values;

use std::{cell::Cell, path::Path};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Format, Toml},
    value::{Dict, Map, Value},
};
use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeOwned, Visitor},
};

pub use values::{Url, millis, optional, require_scheme, seconds};

/// A configuration problem, naming the key and where its value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A value does not have the field's type, or the file is not TOML.
    #[error(transparent)]
    Parse(Box<figment::Error>),
    /// A field's value has the right type but is not allowed.
    #[error("config field `{field}` (BERTH_{}): {reason}", field.to_uppercase())]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    /// A field's value that is not allowed.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// A service's configuration: loaded by [`load`], then checked by its own rules.
pub trait ServiceConfig: DeserializeOwned {
    /// Variables read for a field when neither the file nor its `BERTH_` variable sets it.
    const FALLBACKS: &'static [(&'static str, &'static str)] = &[];

    /// The service's own rules (ranges, URL schemes, fields that go together).
    fn validate(&self) -> Result<(), ConfigError>;

    /// How the service logs.
    fn log_format(&self) -> crate::LogFormat;

    /// Reads `path` (if any), applies `env` and validates.
    fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let cfg: Self = load(path, &env, Self::FALLBACKS)?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Loads `T`: its serde defaults, then `path` (if any), then `BERTH_<FIELD>` from `env`.
/// `fallbacks` name variables read for a field when neither the file nor its `BERTH_`
/// variable sets it (e.g. `("database_url", "DATABASE_URL")`).
pub fn load<T: DeserializeOwned>(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    fallbacks: &[(&'static str, &str)],
) -> Result<T, ConfigError> {
    let fields = fields_of::<T>();
    let mut figment = Figment::new().merge(Vars::read(
        "fallback environment variable",
        fallbacks.iter().map(|(f, var)| (*f, (*var).to_string())),
        env,
    ));
    if let Some(p) = path {
        std::fs::metadata(p).map_err(|source| ConfigError::Read {
            path: p.display().to_string(),
            source,
        })?;
        figment = figment.merge(Toml::file_exact(p));
    }
    let vars = fields
        .iter()
        .map(|f| (*f, format!("BERTH_{}", f.to_uppercase())));
    figment = figment.merge(Vars::read("environment variable", vars, env));
    figment
        .extract_lossy()
        .map_err(|e| ConfigError::Parse(Box::new(e)))
}

/// Environment variables as a figment provider: each value stays text (the field's type
/// decides how it is read) and errors name the variable.
struct Vars {
    what: &'static str,
    /// (field, variable, value)
    set: Vec<(&'static str, String, String)>,
}

impl Vars {
    fn read(
        what: &'static str,
        vars: impl Iterator<Item = (&'static str, String)>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let set = vars
            .filter_map(|(field, var)| env(&var).map(|v| (field, var, v)))
            .collect();
        Self { what, set }
    }
}

impl Provider for Vars {
    fn metadata(&self) -> Metadata {
        let names: Vec<(String, String)> = self
            .set
            .iter()
            .map(|(f, var, _)| ((*f).to_string(), var.clone()))
            .collect();
        Metadata::named(self.what).interpolater(move |_: &Profile, keys: &[&str]| {
            let key = keys.join(".");
            names
                .iter()
                .find(|(f, _)| *f == key)
                .map_or(key, |(_, var)| var.clone())
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict: Dict = self
            .set
            .iter()
            .map(|(f, _, v)| ((*f).to_string(), Value::from(v.clone())))
            .collect();
        Ok(Profile::Default.collect(dict))
    }
}

/// The field names of struct `T`, as serde sees them.
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a Cell<&'static [&'static str]>);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.set(fields);
            Err(de::Error::custom("fields read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let fields = Cell::new(&[][..]);
    let _ = T::deserialize(Probe(&fields));
    fields.get()
}

/// A list written either as a TOML array or, in an environment variable, as comma-separated
/// text (`NET_BIND_SERVICE,CHOWN`); blanks are dropped.
pub fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(l) => l,
        Either::Text(t) => t
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: String,
        #[serde(default = "ten")]
        interval_ms: u64,
        #[serde(default)]
        limit: Option<u32>,
        #[serde(default, deserialize_with = "comma_list")]
        caps: Vec<String>,
        #[serde(default)]
        database_url: String,
    }

    fn ten() -> u64 {
        10
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn file(text: &str) -> tempfile_path::Path {
        tempfile_path::Path::with(text)
    }

    /// A file removed on drop (no tempfile crate for one test).
    mod tempfile_path {
        pub struct Path(pub std::path::PathBuf);
        impl Path {
            pub fn with(text: &str) -> Self {
                let p = std::env::temp_dir().join(format!(
                    "berth-config-{}-{:?}.toml",
                    std::process::id(),
                    std::thread::current().id()
                ));
                std::fs::write(&p, text).expect("temp file");
                Self(p)
            }
        }
        impl Drop for Path {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn fields_are_read_off_the_struct() {
        assert_eq!(
            fields_of::<Sample>(),
            ["name", "interval_ms", "limit", "caps", "database_url"]
        );
    }

    #[test]
    fn environment_overrides_the_file_and_text_becomes_the_fields_type() {
        let f = file("name = \"file\"\ninterval_ms = 5\ncaps = [\"A\"]\n");
        let vars = env(&[
            ("BERTH_NAME", "1234"),
            ("BERTH_LIMIT", "7"),
            ("BERTH_CAPS", "NET_RAW, CHOWN,"),
            ("BERTH_UNRELATED", "ignored"),
            ("DATABASE_URL", "postgres://fallback"),
        ]);
        let s: Sample =
            load(Some(&f.0), &vars, &[("database_url", "DATABASE_URL")]).expect("loads");
        assert_eq!(
            s,
            Sample {
                name: "1234".into(),
                interval_ms: 5,
                limit: Some(7),
                caps: vec!["NET_RAW".into(), "CHOWN".into()],
                database_url: "postgres://fallback".into(),
            }
        );
    }

    #[test]
    fn a_fallback_variable_does_not_beat_the_file() {
        let f = file("name = \"x\"\ndatabase_url = \"postgres://file\"\n");
        let vars = env(&[("DATABASE_URL", "postgres://fallback")]);
        let s: Sample =
            load(Some(&f.0), &vars, &[("database_url", "DATABASE_URL")]).expect("loads");
        assert_eq!(s.database_url, "postgres://file");
        assert_eq!(s.interval_ms, 10, "the struct's default");
    }

    #[test]
    fn errors_name_the_key_and_where_the_value_came_from() {
        let vars = env(&[("BERTH_NAME", "n"), ("BERTH_INTERVAL_MS", "soon")]);
        let e = load::<Sample>(None, &vars, &[]).expect_err("not a number");
        let text = e.to_string();
        assert!(
            text.contains("BERTH_INTERVAL_MS") && text.contains("soon"),
            "{text}"
        );

        let f = file("name = \"n\"\ninterval_ms = \"later\"\n");
        let e = load::<Sample>(Some(&f.0), &env(&[]), &[]).expect_err("not a number");
        let text = e.to_string();
        assert!(
            text.contains("interval_ms") && text.contains(&*f.0.to_string_lossy()),
            "{text}"
        );

        let f = file("name = \"n\"\nintervl_ms = 3\n");
        let text = load::<Sample>(Some(&f.0), &env(&[]), &[])
            .expect_err("typo")
            .to_string();
        assert!(text.contains("intervl_ms"), "{text}");

        let missing = Path::new("/nonexistent/berth.toml");
        let e = load::<Sample>(Some(missing), &env(&[]), &[]).expect_err("no file");
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    }
}
