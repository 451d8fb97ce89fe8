//! Broadcast orchestration: launch a broadcast, deliver it with workers, retry what is
//! transient, and report progress and statistics.
//!
//! The orchestrator sees the world only through the port traits of [`broadcast_domain`]: stores,
//! the audience source, the renderer, channels and a clock. Hand it any implementation — the
//! sea-orm store and the real channels in the binaries, [`memory::MemoryStore`] and a custom
//! channel in an embedding program or a unit test.
//!
//! ```no_run
//! # async fn demo(ports: broadcast_orchestrator::Ports) -> broadcast_domain::Result<()> {
//! use broadcast_orchestrator::{Orchestrator, Settings};
//!
//! let orchestrator = Orchestrator::new(ports, Settings::default());
//! let report = orchestrator.launch(42).await?;
//! println!("queued {:?}", report.materialised.queued);
//! orchestrator.run_until_done(42).await?;
//! println!("{:?}", orchestrator.stats(42).await?);
//! # Ok(()) }
//! ```

mod backoff;
mod breaker;
mod engine;
pub mod memory;
mod progress;
mod settings;

pub use backoff::Backoff;
pub use engine::{Channels, LaunchReport, Orchestrator, Ports, Preview, TestTarget, TickReport};
pub use progress::Progress;
pub use settings::Settings;
