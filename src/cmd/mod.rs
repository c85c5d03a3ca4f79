//! One module per subcommand, each holding only the glue from its resolved config to the core and
//! to the writer it is given (stdout, as `lib` sets it up). What a command concludes is an
//! [`Outcome`](crate::error::Outcome) or an [`Error`](crate::error::Error); `lib` turns either into
//! the exit status.

pub(crate) mod apply;
pub(crate) mod audit;
pub(crate) mod completions;
pub(crate) mod explain;
pub(crate) mod export;
pub(crate) mod profiles;
pub(crate) mod rollback;
pub(crate) mod snapshot;
pub(crate) mod watch;

#[cfg(test)]
mod tests;
