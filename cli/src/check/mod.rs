//! `kubectl netdiag check`: the layered connectivity checklist.
//!
//! `target` parses the flags, `gather` collects the [`evidence::Evidence`] from the API server and
//! the agents, `judge` (pure) turns it into the [`report::Report`], and `cmd` wires them together.

pub mod cmd;
pub mod evidence;
pub mod gather;
pub mod judge;
pub mod report;
pub mod target;

/// An error and its sources as one line (`outer: inner: root`). A source whose text the line
/// already ends with is left out: wrappers that repeat their source's message read once.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layered {
        text: &'static str,
        #[source]
        source: Option<Box<Layered>>,
    }

    fn chain(texts: &[&'static str]) -> Layered {
        texts
            .iter()
            .rev()
            .fold(None, |source, text| {
                Some(Layered {
                    text,
                    source: source.map(Box::new),
                })
            })
            .unwrap()
    }

    #[test]
    fn error_chain_joins_sources_and_reads_a_repeated_message_once() {
        let err = chain(&[
            "failed to list pods",
            "client error (Connect)",
            "client error (Connect)",
            "connection refused",
        ]);
        assert_eq!(
            super::error_chain(&err),
            "failed to list pods: client error (Connect): connection refused"
        );
    }
}
