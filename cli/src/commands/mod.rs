//! The plugin's commands that run the engine: `check` and `policy`.

pub mod check;
pub mod policy;
