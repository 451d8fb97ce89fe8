//! Integration tests of the admin panel: real HTTP against the server on 127.0.0.1, a fresh
//! SQLite (and for some tests PostgreSQL) database per test, outbox channels in a temporary
//! directory, and headless Chromium for the browser flow.

mod api;
mod audit;
mod auth;
mod browser;
mod helpers;
mod pages;
mod postgres;
mod public;
