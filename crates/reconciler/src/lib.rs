//! Not built yet: see the open issue for this crate. This shell keeps the workspace layout of
//! DESIGN §1 in place.
