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
