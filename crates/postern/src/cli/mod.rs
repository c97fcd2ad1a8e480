//! Admin commands beyond accounts, one file per command family: `pgp`, `group`,
//! `quarantine`, `rules`. Each works on the same store and data dir as `postern serve`.

pub mod group;
pub mod pgp;
pub mod quarantine;
pub mod rules;
