//! Test helpers for the broadcast system: databases per test (and, later, fake servers).

pub mod db;
pub mod smtp;
pub mod telegram;

pub use db::{Backend, TestDb};
