//! One registry of everything a client is offered: the stream features of each negotiation
//! stage, the SASL mechanisms (per connection: `-PLUS` only with channel binding; FAST ones
//! only inside SASL2's `<fast/>`), what SASL2 and Bind2 take inline, and the disco#info
//! features. The code that implements a thing registers its offer here (the stream layer its
//! mechanisms and `<starttls/>`/`<bind/>`, each module its own), through
//! [`crate::router::RouterBuilder::offer`]; negotiation and disco only read from here, so
//! nothing is offered that nothing implements.

use std::collections::{BTreeSet, HashMap};

use minidom::Element;
use postern_accounts::scram::{ChannelBindings, ScramHash};

use crate::router::Scope;

/// Where in stream negotiation a feature is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Plain TCP: only the way to TLS.
    BeforeTls,
    /// Secured, not authenticated: next to the SASL mechanisms.
    BeforeAuth,
    /// Authenticated (after the SASL restart, or after SASL2 without Bind2), next to `<bind/>`.
    Authenticated,
}

/// What runs a SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MechanismKind {
    Plain,
    Scram {
        hash: ScramHash,
        plus: bool,
    },
    /// XEP-0484 FAST token (HT-SHA-256-NONE); SASL2 only, offered inside `<fast/>`.
    FastToken,
}

/// A SASL mechanism on offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mechanism {
    pub name: &'static str,
    pub kind: MechanismKind,
}

impl Mechanism {
    /// Whether this connection can run it (`-PLUS` needs a channel binding).
    pub fn usable(&self, bindings: &ChannelBindings) -> bool {
        match self.kind {
            MechanismKind::Scram { plus, .. } => !plus || bindings.any(),
            MechanismKind::Plain | MechanismKind::FastToken => true,
        }
    }

    pub fn is_fast(&self) -> bool {
        self.kind == MechanismKind::FastToken
    }
}

/// The registry (built once, read by every negotiation).
#[derive(Debug, Default)]
pub struct Features {
    stream: HashMap<Stage, Vec<Element>>,
    /// In order of preference.
    mechanisms: Vec<Mechanism>,
    /// Bind2 inline features (their `var`s); the router keeps their handlers.
    bind2: Vec<String>,
    sasl2_inline: Vec<Element>,
    disco: HashMap<Scope, BTreeSet<String>>,
    services: Vec<crate::hosts::Service>,
}

impl Features {
    pub(crate) fn add_stream_feature(&mut self, stage: Stage, feature: Element) {
        self.stream.entry(stage).or_default().push(feature);
    }

    pub(crate) fn add_mechanism(&mut self, mechanism: Mechanism) -> Result<(), String> {
        if self.mechanisms.iter().any(|m| m.name == mechanism.name) {
            return Err(format!(
                "SASL mechanism {} registered twice",
                mechanism.name
            ));
        }
        self.mechanisms.push(mechanism);
        Ok(())
    }

    pub(crate) fn add_bind2(&mut self, var: &str) {
        self.bind2.push(var.to_owned());
    }

    pub(crate) fn add_sasl2_inline(&mut self, feature: Element) {
        self.sasl2_inline.push(feature);
    }

    pub(crate) fn add_service(&mut self, service: crate::hosts::Service) -> Result<(), String> {
        if self.services.iter().any(|s| s.label == service.label) {
            return Err(format!("two services at {}.<domain>", service.label));
        }
        self.services.push(service);
        Ok(())
    }

    /// The sub-services modules registered.
    pub fn services(&self) -> &[crate::hosts::Service] {
        &self.services
    }

    pub(crate) fn add_disco(&mut self, scope: Scope, feature: &str) {
        self.disco
            .entry(scope)
            .or_default()
            .insert(feature.to_owned());
    }

    /// The stream features of `stage` (besides the SASL ones).
    pub fn stream(&self, stage: Stage) -> &[Element] {
        self.stream.get(&stage).map_or(&[], Vec::as_slice)
    }

    /// The mechanism called `name`, if it is on offer.
    pub fn mechanism(&self, name: &str) -> Option<&Mechanism> {
        self.mechanisms.iter().find(|m| m.name == name)
    }

    /// The password mechanisms this connection is offered, in order of preference.
    pub fn mechanisms(&self, bindings: &ChannelBindings) -> impl Iterator<Item = &Mechanism> {
        self.mechanisms
            .iter()
            .filter(move |m| !m.is_fast() && m.usable(bindings))
    }

    /// The FAST mechanisms (offered inside SASL2's `<fast/>`).
    pub fn fast_mechanisms(&self) -> impl Iterator<Item = &Mechanism> {
        self.mechanisms.iter().filter(|m| m.is_fast())
    }

    /// The Bind2 inline features on offer (their `var`s).
    pub fn bind2_vars(&self) -> impl Iterator<Item = &str> {
        self.bind2.iter().map(String::as_str)
    }

    /// What SASL2's `<inline/>` offers besides Bind2.
    pub fn sasl2_inline(&self) -> &[Element] {
        &self.sasl2_inline
    }

    /// The disco#info features of `scope`.
    pub fn disco(&self, scope: Scope) -> impl Iterator<Item = &str> {
        self.disco
            .get(&scope)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }
}
