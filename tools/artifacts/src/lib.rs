//! The contracts' artifact pipeline: compile the contracts the bindings need with the project's
//! solc (through `foundry-compilers`, the compiler driver forge itself uses), render each one's
//! ABI and bytecode as `bindings/artifacts/<Name>.json`, and compare a fresh build with the
//! committed files so that Solidity and the Rust (and TypeScript) bindings cannot drift.

mod profile;
mod typescript;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use foundry_compilers::{
    Artifact, ProjectBuilder, ProjectPathsConfig,
    artifacts::{Settings, SettingsMetadata},
    solc::{Solc, SolcCompiler, SolcSettings},
};
use serde::Serialize;

pub use profile::{Profile, ProfileError};
pub use typescript::{TYPESCRIPT_BINDINGS, TypescriptError, typescript};

/// A contract whose artifact the bindings are generated from.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub name: &'static str,
    /// Source file, relative to the project root.
    pub source: &'static str,
}

/// Every artifact in `bindings/artifacts/`. The last two are test-only: the Rust suite checks
/// berth-protocol's formulas against `LeaseMathHarness`, and a contract tenant signs uploads
/// through ERC-1271 with `ContractWallet`.
pub const CONTRACTS: &[Wanted] = &[
    Wanted {
        name: "ProviderRegistry",
        source: "contracts/src/ProviderRegistry.sol",
    },
    Wanted {
        name: "LeaseEscrow",
        source: "contracts/src/LeaseEscrow.sol",
    },
    Wanted {
        name: "TestToken",
        source: "contracts/src/mocks/TestToken.sol",
    },
    Wanted {
        name: "LeaseMathHarness",
        source: "contracts/test/harness/LeaseMathHarness.sol",
    },
    Wanted {
        name: "ContractWallet",
        source: "contracts/test/mocks/ContractWallet.sol",
    },
];

/// Why the artifacts could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error("solc at {path} does not answer `--version`")]
    Solc {
        path: PathBuf,
        #[source]
        source: Box<foundry_compilers::error::SolcError>,
    },
    #[error("compiling the contracts failed")]
    Compile(#[source] Box<foundry_compilers::error::SolcError>),
    #[error("solc reported errors:\n{0}")]
    CompilerErrors(String),
    #[error("{name}: no such contract in {source_file}")]
    Missing {
        name: &'static str,
        source_file: &'static str,
    },
    #[error("{name}: {part} missing from solc's output")]
    Incomplete {
        name: &'static str,
        part: &'static str,
    },
    #[error("{name}: cannot render the artifact")]
    Render {
        name: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// One artifact as committed: the ABI and both bytecodes, nothing path- or machine-specific.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Rendered<'a, Abi> {
    abi: &'a Abi,
    bytecode: Object,
    deployed_bytecode: Object,
}

#[derive(Debug, Serialize)]
struct Object {
    object: String,
}

/// Compiles `wanted` with the profile's settings and renders each artifact's file contents.
pub fn build(
    profile: &Profile,
    wanted: &[Wanted],
) -> Result<BTreeMap<String, Vec<u8>>, BuildError> {
    let solc = Solc::new(&profile.solc).map_err(|source| BuildError::Solc {
        path: profile.solc.clone(),
        source: Box::new(source),
    })?;
    let mut paths = ProjectPathsConfig::builder()
        .root(&profile.root)
        .sources(&profile.sources)
        .tests(&profile.tests)
        .remappings(profile.remappings.iter().cloned());
    for lib in &profile.libs {
        paths = paths.lib(lib);
    }
    let mut settings = Settings::default();
    if profile.optimizer {
        settings.optimizer.enable();
    }
    settings.optimizer.runs(profile.optimizer_runs);
    settings.evm_version = profile.evm_version;
    settings.via_ir = profile.via_ir.then_some(true);
    settings.metadata = profile.bytecode_hash.map(SettingsMetadata::from);
    let project = ProjectBuilder::<SolcCompiler>::new(Default::default())
        .paths(paths.build_with_root(&profile.root))
        .settings(SolcSettings {
            settings,
            ..Default::default()
        })
        .ephemeral()
        .no_artifacts()
        .offline()
        .build(SolcCompiler::Specific(solc))
        .map_err(|e| BuildError::Compile(Box::new(e)))?;
    let output = project
        .compile_files(wanted.iter().map(|w| profile.root.join(w.source)))
        .map_err(|e| BuildError::Compile(Box::new(e)))?;
    if output.has_compiler_errors() {
        return Err(BuildError::CompilerErrors(output.to_string()));
    }
    let mut rendered = BTreeMap::new();
    for w in wanted {
        let source = profile.root.join(w.source);
        let artifact = output.find(&source, w.name).ok_or(BuildError::Missing {
            name: w.name,
            source_file: w.source,
        })?;
        let incomplete = |part| BuildError::Incomplete { name: w.name, part };
        let abi = artifact.abi.as_ref().ok_or(incomplete("abi"))?;
        let bytecode = artifact
            .get_bytecode_bytes()
            .ok_or(incomplete("bytecode"))?;
        let deployed = artifact
            .get_deployed_bytecode_bytes()
            .ok_or(incomplete("deployedBytecode"))?;
        let doc = Rendered {
            abi,
            bytecode: Object {
                object: bytecode.to_string(),
            },
            deployed_bytecode: Object {
                object: deployed.to_string(),
            },
        };
        rendered.insert(
            format!("{}.json", w.name),
            render(&doc).map_err(|source| BuildError::Render {
                name: w.name,
                source,
            })?,
        );
    }
    Ok(rendered)
}

/// Pretty JSON with one-space indents (as forge's artifacts), ending in a newline.
fn render(doc: &impl Serialize) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    doc.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out, formatter,
    ))?;
    out.push(b'\n');
    Ok(out)
}

/// How the committed directory differs from a fresh build.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drift {
    /// Files whose contents differ.
    pub stale: Vec<String>,
    /// Files a fresh build has and the directory lacks.
    pub missing: Vec<String>,
    /// `.json` files in the directory that no contract produces any more.
    pub extra: Vec<String>,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.stale.is_empty() && self.missing.is_empty() && self.extra.is_empty()
    }
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (what, files) in [
            ("differs from a fresh build", &self.stale),
            ("is missing", &self.missing),
            ("is not produced by any contract", &self.extra),
        ] {
            for file in files {
                writeln!(f, "  {file} {what}")?;
            }
        }
        Ok(())
    }
}

/// Compares `fresh` with the `.json` files in `dir`.
pub fn drift(dir: &Path, fresh: &BTreeMap<String, Vec<u8>>) -> std::io::Result<Drift> {
    let mut drift = Drift::default();
    for (file, contents) in fresh {
        match std::fs::read(dir.join(file)) {
            Ok(committed) if committed == *contents => {}
            Ok(_) => drift.stale.push(file.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => drift.missing.push(file.clone()),
            Err(e) => return Err(e),
        }
    }
    if dir.exists() {
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && !fresh.contains_key(&name) {
                drift.extra.push(name);
            }
        }
    }
    drift.extra.sort();
    Ok(drift)
}

/// Replaces the `.json` files in `dir` with `fresh` (files no contract produces are removed).
pub fn write(dir: &Path, fresh: &BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for extra in drift(dir, fresh)?.extra {
        std::fs::remove_file(dir.join(extra))?;
    }
    for (file, contents) in fresh {
        std::fs::write(dir.join(file), contents)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            ("A.json".to_owned(), b"{\"a\":1}\n".to_vec()),
            ("B.json".to_owned(), b"{\"b\":1}\n".to_vec()),
        ])
    }

    #[test]
    fn a_written_directory_has_no_drift_and_every_change_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("Old.json"), "{}").expect("write");
        std::fs::write(dir.path().join("README"), "kept").expect("write");
        write(dir.path(), &fresh()).expect("write artifacts");
        assert!(drift(dir.path(), &fresh()).expect("drift").is_empty());
        assert!(
            dir.path().join("README").exists(),
            "only .json files are managed"
        );

        std::fs::write(dir.path().join("A.json"), "{\"a\":2}\n").expect("write");
        std::fs::remove_file(dir.path().join("B.json")).expect("remove");
        std::fs::write(dir.path().join("C.json"), "{}").expect("write");
        let found = drift(dir.path(), &fresh()).expect("drift");
        assert_eq!(
            found,
            Drift {
                stale: vec!["A.json".into()],
                missing: vec!["B.json".into()],
                extra: vec!["C.json".into()],
            }
        );
        let text = found.to_string();
        assert!(text.contains("A.json differs from a fresh build"), "{text}");
        assert!(text.contains("B.json is missing"), "{text}");
        assert!(
            text.contains("C.json is not produced by any contract"),
            "{text}"
        );
    }

    #[test]
    fn rendering_is_forges_layout_and_ends_in_a_newline() {
        let doc = serde_json::json!({"abi": [], "bytecode": {"object": "0x00"}});
        let text = String::from_utf8(render(&doc).expect("render")).expect("utf8");
        assert_eq!(
            text,
            "{\n \"abi\": [],\n \"bytecode\": {\n  \"object\": \"0x00\"\n }\n}\n"
        );
    }
}
