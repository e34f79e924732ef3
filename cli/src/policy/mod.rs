//! NetworkPolicy evaluation and `kubectl netdiag policy`.

pub mod cmd;
