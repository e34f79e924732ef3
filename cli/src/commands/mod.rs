//! The plugin's commands that run the engine: `check` and `policy` (with `policy verify`, which runs checks).

pub mod check;
pub mod policy;
pub mod verify;
