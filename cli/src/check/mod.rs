//! `kubectl netdiag check`: the layered connectivity checklist.

pub mod cmd;
