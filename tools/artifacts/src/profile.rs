//! The compiler settings of `foundry.toml`'s default profile, so that this tool and `forge build`
//! compile with the same solc, optimizer, EVM version and remappings.

use std::path::{Path, PathBuf};

use foundry_compilers::artifacts::{BytecodeHash, EvmVersion, remappings::Remapping};
use serde::Deserialize;

/// What could not be read from `foundry.toml`.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML for a Foundry config")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: [profile.default] is missing")]
    NoDefaultProfile { path: PathBuf },
    #[error("{path}: profile.default.{field} = {value:?}: {reason}")]
    Field {
        path: PathBuf,
        field: &'static str,
        value: String,
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
struct FoundryToml {
    profile: Option<Profiles>,
}

#[derive(Debug, Deserialize)]
struct Profiles {
    default: Option<RawProfile>,
}

/// The keys this tool reads; every other key of the profile is forge's alone.
#[derive(Debug, Deserialize)]
struct RawProfile {
    src: Option<String>,
    test: Option<String>,
    solc: Option<String>,
    evm_version: Option<String>,
    optimizer: Option<bool>,
    optimizer_runs: Option<usize>,
    via_ir: Option<bool>,
    bytecode_hash: Option<String>,
    #[serde(default)]
    libs: Vec<String>,
    #[serde(default)]
    remappings: Vec<String>,
}

/// The default profile's compiler settings, paths resolved against the project root.
#[derive(Debug, Clone)]
pub struct Profile {
    pub root: PathBuf,
    pub sources: PathBuf,
    pub tests: PathBuf,
    /// The solc executable (the project's shim over solcjs).
    pub solc: PathBuf,
    pub evm_version: Option<EvmVersion>,
    pub optimizer: bool,
    pub optimizer_runs: usize,
    pub via_ir: bool,
    pub bytecode_hash: Option<BytecodeHash>,
    pub libs: Vec<PathBuf>,
    pub remappings: Vec<Remapping>,
}

impl Profile {
    /// Reads `<root>/foundry.toml`.
    pub fn load(root: &Path) -> Result<Self, ProfileError> {
        let path = root.join("foundry.toml");
        let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(root, &path, &text)
    }

    fn parse(root: &Path, path: &Path, text: &str) -> Result<Self, ProfileError> {
        let parsed: FoundryToml = toml::from_str(text).map_err(|source| ProfileError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let raw = parsed.profile.and_then(|p| p.default).ok_or_else(|| {
            ProfileError::NoDefaultProfile {
                path: path.to_owned(),
            }
        })?;
        let field = |field: &'static str, value: &str, reason: String| ProfileError::Field {
            path: path.to_owned(),
            field,
            value: value.to_owned(),
            reason,
        };
        let solc = raw.solc.ok_or_else(|| {
            field(
                "solc",
                "",
                "must name the solc executable: this tool never downloads one".into(),
            )
        })?;
        let evm_version = raw
            .evm_version
            .as_deref()
            .map(|v| {
                v.parse::<EvmVersion>()
                    .map_err(|e| field("evm_version", v, e))
            })
            .transpose()?;
        let bytecode_hash = raw
            .bytecode_hash
            .as_deref()
            .map(|v| {
                v.parse::<BytecodeHash>()
                    .map_err(|e| field("bytecode_hash", v, e))
            })
            .transpose()?;
        let remappings = raw
            .remappings
            .iter()
            .map(|r| {
                r.parse::<Remapping>()
                    .map_err(|e| field("remappings", r, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            root: root.to_owned(),
            sources: root.join(raw.src.as_deref().unwrap_or("src")),
            tests: root.join(raw.test.as_deref().unwrap_or("test")),
            solc: root.join(solc),
            evm_version,
            // Forge's defaults where the profile is silent.
            optimizer: raw.optimizer.unwrap_or(false),
            optimizer_runs: raw.optimizer_runs.unwrap_or(200),
            via_ir: raw.via_ir.unwrap_or(false),
            bytecode_hash,
            libs: raw.libs.iter().map(|l| root.join(l)).collect(),
            remappings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Profile, ProfileError> {
        Profile::parse(Path::new("/p"), Path::new("/p/foundry.toml"), text)
    }

    #[test]
    fn reads_the_settings_that_change_the_bytecode() {
        let profile = parse(
            r#"
            [profile.default]
            src = "contracts/src"
            solc = "tools/solc"
            evm_version = "cancun"
            optimizer = true
            optimizer_runs = 1000
            bytecode_hash = "none"
            libs = ["node_modules"]
            remappings = ["@oz/=node_modules/@oz/"]
            [profile.ci.invariant]
            runs = 5
            "#,
        )
        .expect("valid profile");
        assert_eq!(profile.sources, Path::new("/p/contracts/src"));
        assert_eq!(profile.solc, Path::new("/p/tools/solc"));
        assert_eq!(profile.evm_version, Some(EvmVersion::Cancun));
        assert!(profile.optimizer);
        assert_eq!(profile.optimizer_runs, 1000);
        assert_eq!(profile.bytecode_hash, Some(BytecodeHash::None));
        assert_eq!(profile.libs, vec![PathBuf::from("/p/node_modules")]);
        assert_eq!(profile.remappings[0].name, "@oz/");
    }

    #[test]
    fn names_the_field_it_cannot_use() {
        let err = parse("[profile.default]\nsolc = \"s\"\nevm_version = \"london-ish\"\n")
            .expect_err("unknown EVM version");
        assert!(
            err.to_string()
                .contains("profile.default.evm_version = \"london-ish\""),
            "{err}"
        );
        let err = parse("[profile.default]\noptimizer = true\n").expect_err("no solc");
        assert!(err.to_string().contains("profile.default.solc"), "{err}");
        let err = parse("[profile.ci]\nsolc = \"s\"\n").expect_err("no default profile");
        assert!(
            err.to_string().contains("[profile.default] is missing"),
            "{err}"
        );
    }
}
