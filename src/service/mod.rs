//! The application's use cases, between the REST edge and the actors: what a change to a task
//! does (commit it, hand it to its actor, tell the cluster) lives here once, in plain async
//! code that takes its collaborators as values, so it is tested without HTTP.

pub mod dry_run;
pub mod keys;
pub mod tasks;
