//! Admin commands beyond account basics, one file per command family: `account import`,
//! `files`, `pgp`, `group`, `logs`, `quarantine`, `rules`. Each works on the same store and data dir as `postern serve`.

pub mod account_import;
pub mod files;
pub mod group;
pub mod logs;
pub mod pgp;
pub mod quarantine;
pub mod rules;
