//! `postern pgp ...`: the gateway's key store. Secret keys are sealed with the server key
//! (`[gateway] server_key_file` / `server_key_env`) and leave the store only through
//! `export --secret`.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use postern::Config;
use postern_gateway::{Imported, KeyStore, Selector};
use postern_pgp::{KeyAlgorithm, KeyProfile, KeySpec, RevocationReason};

#[derive(Subcommand)]
pub enum PgpCmd {
    /// Generate a key for a local user (defaults from [gateway.keygen]).
    Keygen {
        /// The user's address; its domain must be served.
        address: String,
        /// Display name for the user ID ("Alice Example <alice@example.com>").
        #[arg(long)]
        name: Option<String>,
        /// cv25519, rsa2048, rsa3072 or rsa4096.
        #[arg(long)]
        algo: Option<String>,
        /// Validity such as "2y", "90d", or "never".
        #[arg(long)]
        expires: Option<String>,
        /// rfc4880 (v4 keys, readable everywhere) or rfc9580 (v6).
        #[arg(long)]
        profile: Option<String>,
    },
    /// Import public or secret keys (armored or binary, several per file; "-" for stdin).
    Import {
        file: PathBuf,
        /// Read the passphrase of protected secret keys from the first line of stdin
        /// (then FILE cannot be "-").
        #[arg(long)]
        passphrase_stdin: bool,
    },
    /// Print the armored key(s) of an address or fingerprint.
    Export {
        /// Address or fingerprint.
        key: String,
        /// Export the secret key, unprotected (handle with care).
        #[arg(long)]
        secret: bool,
    },
    /// List keys.
    List {
        /// Only keys held for local users (with secret).
        #[arg(long, conflicts_with = "external")]
        local: bool,
        /// Only correspondents' public keys.
        #[arg(long)]
        external: bool,
    },
    /// Revoke the held key(s) of an address or fingerprint (they are never used again to
    /// encrypt); `export` then gives the revocation to publish.
    Revoke {
        /// Address or fingerprint.
        key: String,
        #[arg(long, value_enum, default_value_t = Reason::Retired)]
        reason: Reason,
        /// Human-readable explanation stored in the revocation.
        #[arg(long, default_value = "")]
        message: String,
    },
    /// Delete key(s) of an address or fingerprint from the store.
    Delete {
        /// Address or fingerprint.
        key: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Reason {
    Compromised,
    Superseded,
    Retired,
    Unspecified,
}

pub async fn run(config: &Config, cmd: PgpCmd) -> anyhow::Result<()> {
    let store = postern::open_store(config).await?;
    let keys = postern_gateway::open_keystore(&config.gateway, &config.data_dir, store)?;
    match cmd {
        PgpCmd::Keygen {
            address,
            name,
            algo,
            expires,
            profile,
        } => keygen(config, &keys, &address, name, algo, expires, profile).await,
        PgpCmd::Import {
            file,
            passphrase_stdin,
        } => import(&keys, &file, passphrase_stdin).await,
        PgpCmd::Export { key, secret } => {
            let selector = Selector::parse(&key);
            let out = if secret {
                keys.export_secret(&selector).await?
            } else {
                keys.export_public(&selector).await?
            };
            std::io::stdout().write_all(out.as_bytes())?;
            Ok(())
        }
        PgpCmd::List { local, external } => {
            let filter = match (local, external) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let now = SystemTime::now();
            for k in keys.list(filter).await? {
                let mut flags = vec![if k.local { "local" } else { "external" }];
                if k.revoked {
                    flags.push("revoked");
                } else if k.expires.is_some_and(|e| e <= now) {
                    flags.push("expired");
                } else if !k.usable {
                    flags.push("unusable");
                }
                println!(
                    "{}\t{}\t{}\tcreated {}\texpires {}\t{}",
                    k.fingerprint,
                    flags.join(","),
                    k.algorithm,
                    date(k.created),
                    k.expires.map_or_else(|| "never".to_owned(), date),
                    k.addresses.join(",")
                );
            }
            Ok(())
        }
        PgpCmd::Revoke {
            key,
            reason,
            message,
        } => {
            let reason = match reason {
                Reason::Compromised => RevocationReason::Compromised,
                Reason::Superseded => RevocationReason::Superseded,
                Reason::Retired => RevocationReason::Retired,
                Reason::Unspecified => RevocationReason::Unspecified,
            };
            for fpr in keys
                .revoke(&Selector::parse(&key), reason, &message)
                .await?
            {
                println!("revoked {fpr}");
            }
            Ok(())
        }
        PgpCmd::Delete { key } => {
            for fpr in keys.delete(&Selector::parse(&key)).await? {
                println!("deleted {fpr}");
            }
            Ok(())
        }
    }
}

async fn keygen(
    config: &Config,
    keys: &KeyStore,
    address: &str,
    name: Option<String>,
    algo: Option<String>,
    expires: Option<String>,
    profile: Option<String>,
) -> anyhow::Result<()> {
    let address = address.trim().to_lowercase();
    let Some((local, domain)) = address.split_once('@') else {
        bail!("`{address}` is not an address like alice@example.com");
    };
    if local.is_empty() || !config.serves(domain) {
        bail!(
            "`{address}` is not in a served domain ({}); keys are generated for local users only — import outside keys instead",
            config.domain_names().join(", ")
        );
    }
    let defaults = &config.gateway.keygen;
    let mut spec = KeySpec::new(match name {
        Some(n) => format!("{n} <{address}>"),
        None => address.clone(),
    });
    spec.algorithm = match algo {
        Some(a) => a.parse::<KeyAlgorithm>()?,
        None => defaults.algorithm,
    };
    spec.profile = match profile {
        Some(p) => p.parse::<KeyProfile>()?,
        None => defaults.profile,
    };
    spec.validity = match expires {
        Some(e) => postern_gateway::config::parse_validity(&e).map_err(anyhow::Error::msg)?,
        None => defaults.expires,
    };
    let what = format!("{} {} key for {address}", spec.algorithm, spec.profile);
    let started = Instant::now();
    let generation = keys.generate(spec);
    tokio::pin!(generation);
    // Progress on a terminal: RSA 4096 can take a minute.
    let terminal = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let cert = loop {
        tokio::select! {
            r = &mut generation => break r?,
            _ = tick.tick(), if terminal => {
                let spinner = ['|', '/', '-', '\\'][(started.elapsed().as_millis() / 250 % 4) as usize];
                eprint!("\r{spinner} generating {what}... {}s", started.elapsed().as_secs());
            }
        }
    };
    if terminal {
        eprintln!(
            "\r  generated {what} in {:.1}s   ",
            started.elapsed().as_secs_f32()
        );
    }
    println!("{}", cert.fingerprint().to_hex());
    Ok(())
}

async fn import(keys: &KeyStore, file: &PathBuf, passphrase_stdin: bool) -> anyhow::Result<()> {
    let stdin_file = file.as_os_str() == "-";
    if stdin_file && passphrase_stdin {
        bail!("--passphrase-stdin needs the keys in a file, not on stdin");
    }
    let data = if stdin_file {
        let mut v = Vec::new();
        std::io::stdin().read_to_end(&mut v)?;
        v
    } else {
        std::fs::read(file).with_context(|| format!("reading {}", file.display()))?
    };
    let passphrase = if passphrase_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        None
    };
    for outcome in keys.import(&data, passphrase.as_deref()).await? {
        match outcome {
            Imported::New(f) => println!("new\t{f}"),
            Imported::Updated(f) => println!("updated\t{f}"),
            Imported::Unchanged(f) => println!("unchanged\t{f}"),
        }
    }
    Ok(())
}

/// RFC 3339 date (UTC, day precision).
fn date(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.get(..10).unwrap_or(&s).to_owned()
}
