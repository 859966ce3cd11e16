//! Measures spool enqueue throughput with group commit:
//! `cargo run --release -p postamt-spool --example enqueue_rate -- [tasks] [per_task] [size] [dir]`.

use postamt_spool::{NewMessage, Spool};
use std::sync::Arc;
use std::time::Instant;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let tasks: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let per_task: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let size: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let tmp = tempfile::tempdir()?;
    let dir = args
        .get(4)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let spool = Arc::new(Spool::open(&dir)?);
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let spool = Arc::clone(&spool);
        handles.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let msg = NewMessage {
                    mail_from: "a@example.org".into(),
                    recipients: vec!["b@example.org".into()],
                    ..Default::default()
                };
                spool.enqueue(msg, vec![b'x'; size]).await?;
            }
            Ok::<(), postamt_spool::SpoolError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let n = tasks * per_task;
    println!(
        "{n} messages of {size} bytes from {tasks} tasks: {:.0} msg/s",
        n as f64 / secs
    );
    Ok(())
}
