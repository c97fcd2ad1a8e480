//! Admin commands beyond accounts, one file per command family: `pgp`, `group`,
//! `logs`, `quarantine`, `rules`. Each works on the same store and data dir as `postern serve`.

pub mod group;
pub mod logs;
pub mod pgp;
pub mod quarantine;
pub mod rules;
