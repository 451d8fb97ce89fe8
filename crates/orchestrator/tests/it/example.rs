//! `examples/embed.rs` runs as part of the test suite: an orchestrator over `MemoryStore`, a
//! hand-written renderer and a webhook channel posting to a server on 127.0.0.1.

#[path = "../../examples/embed.rs"]
#[allow(dead_code)] // its `main`, used when it runs as an example
mod embed;

use broadcast_domain::{DeliveryStatus, ErrorKind};

#[tokio::test(flavor = "multi_thread")]
async fn the_embedding_example_delivers_through_its_webhook() {
    let report = embed::run().await.expect("the example runs to the end");
    assert_eq!(report.stats.count(DeliveryStatus::Sent), 3);
    assert_eq!(report.received.len(), 3, "one POST per delivered message");
    assert_eq!(
        report.stats.by_error_kind.get(&ErrorKind::Blocked),
        Some(&1)
    );
    let mut names: Vec<&str> = report
        .received
        .iter()
        .map(|b| b["text"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "Hi Ada, welcome to the club!",
            "Hi Bo, welcome to the club!",
            "Hi Cy, welcome to the club!"
        ]
    );
}
