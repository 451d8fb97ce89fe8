//! Domain of the broadcast system: models, validated newtypes, enums, the audience filter and the
//! port traits that the adapters (store, channels, renderer, audience source) implement.
//!
//! This crate does no I/O. Everything that talks to a database, a network or a template engine
//! lives in another crate and is handed to the orchestrator as `Arc<dyn Trait>`.

mod budget;
mod channel;
mod error;
mod filter;
mod import;
mod lifecycle;
mod media;
mod model;
mod ports;
mod types;

pub use budget::{BudgetState, Moves, Owed, Slots};
pub use channel::{
    AddressSource, ChannelKind, ChannelPolicy, ChannelSpec, MAX_KINDS, MAX_POLICY_KINDS, Reach,
    Reaches, UserField,
};
pub use error::{DeliveryError, Error, FailureKind, Result, TemplateError, TemplateErrorKind};
pub use filter::{AudienceFilter, FilterError, fold_case};
pub use import::*;
pub use lifecycle::Transition;
pub use media::{
    MAX_MEDIA_NAME, MAX_TELEGRAM_MEDIA, MediaId, MediaKind, MediaRef, Medium, NewMedium,
    check_name, check_still_held, human_size, name_taken, refuse_if_used,
};
pub use model::*;
pub use ports::*;
pub use types::*;
