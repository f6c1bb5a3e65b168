//! A bounded look at manifest text before it is deserialized: YAML anchors and aliases let a
//! few kilobytes expand to gigabytes (an "alias bomb"), so a manifest may use none; nesting
//! and the number of nodes are capped too. The scan walks the parser's events once and
//! stops at the first offence, so its cost is linear in the bytes, whatever they say.

use yaml_rust2::parser::{Event, Parser};

/// Deepest nesting of mappings and sequences a manifest needs (services → service → ports
/// → port is four); anything deeper is refused.
pub const MAX_DEPTH: usize = 16;
/// Most YAML nodes (scalars, mappings, sequences) in one manifest.
pub const MAX_NODES: usize = 20_000;

/// Why manifest text was refused before deserialization.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// An anchor (`&name`) or alias (`*name`): not allowed in a manifest.
    #[error("YAML anchors and aliases are not allowed in a manifest (line {line})")]
    Alias {
        /// 1-based line of the anchor or alias.
        line: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH} levels (line {line})")]
    TooDeep {
        /// 1-based line where the limit was passed.
        line: usize,
    },
    /// More than [`MAX_NODES`] nodes.
    #[error("more than {MAX_NODES} YAML nodes")]
    TooManyNodes,
    /// More than one YAML document.
    #[error("a manifest is one YAML document (a second starts on line {line})")]
    SeveralDocuments {
        /// 1-based line of the second document.
        line: usize,
    },
    /// Not YAML at all.
    #[error("{0}")]
    Syntax(String),
}

/// Checks `text` for anchors, aliases, depth, size and a single document.
pub fn scan(text: &str) -> Result<(), ScanError> {
    let mut parser = Parser::new_from_str(text);
    let (mut depth, mut nodes, mut documents) = (0usize, 0usize, 0usize);
    loop {
        let (event, mark) = parser
            .next_token()
            .map_err(|e| ScanError::Syntax(e.to_string()))?;
        let line = mark.line();
        let anchored = match &event {
            Event::StreamEnd => return Ok(()),
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(ScanError::SeveralDocuments { line });
                }
                false
            }
            Event::Alias(_) => true,
            Event::Scalar(_, _, anchor, _) => {
                nodes += 1;
                *anchor != 0
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                nodes += 1;
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ScanError::TooDeep { line });
                }
                *anchor != 0
            }
            Event::SequenceEnd | Event::MappingEnd => {
                depth = depth.saturating_sub(1);
                false
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => false,
        };
        if anchored {
            return Err(ScanError::Alias { line });
        }
        if nodes > MAX_NODES {
            return Err(ScanError::TooManyNodes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic alias bomb: each level repeats the one below nine times.
    pub(crate) fn bomb(levels: usize) -> String {
        let mut s = String::from("version: 1\nx0: &a0 \"");
        s.push_str(&"lol".repeat(1000));
        s.push_str("\"\n");
        for i in 1..=levels {
            let refs = vec![format!("*a{}", i - 1); 9].join(", ");
            s.push_str(&format!("x{i}: &a{i} [{refs}]\n"));
        }
        s
    }

    #[test]
    fn anchors_and_aliases_are_refused_at_once() {
        let started = std::time::Instant::now();
        let err = scan(&bomb(12)).expect_err("bomb");
        assert_eq!(err, ScanError::Alias { line: 2 });
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        assert!(matches!(
            scan("a: [1]\nb: *x\n"),
            Err(ScanError::Alias { .. }) | Err(ScanError::Syntax(_))
        ));
        assert!(matches!(
            scan("a: &x {b: 1}\n"),
            Err(ScanError::Alias { line: 1 })
        ));
    }

    #[test]
    fn ampersands_and_stars_inside_strings_are_fine() {
        scan("args: [sh, -c, \"a && b * c\"]\nenv: {A: 'x&y', B: a*b}\n").expect("plain text");
    }

    #[test]
    fn depth_nodes_and_documents_are_capped() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(matches!(scan(&deep), Err(ScanError::TooDeep { .. })));
        let many = format!("[{}]", vec!["1"; MAX_NODES + 1].join(","));
        assert_eq!(scan(&many), Err(ScanError::TooManyNodes));
        assert!(matches!(
            scan("a: 1\n---\nb: 2\n"),
            Err(ScanError::SeveralDocuments { line: 2 })
        ));
        scan("---\na: 1\n").expect("one explicit document");
    }
}
