//! Integration tests of the `twtune` binary: on captured fixture roots, and on the real kernel inside
//! private network namespaces.

mod agree;
mod apply;
mod audit;
mod conntrack;
mod culprit;
mod deploy;
mod differential;
mod export;
mod install;
mod layout;
mod limits;
mod man;
mod namespaces;
mod nat_admission;
mod nat_rules;
mod netlink;
mod netns;
mod outputs;
mod package;
mod profiles;
mod races;
mod real_kernel;
mod sysctl_d;
mod trace;
mod untrusted;
mod util;
mod watch;
