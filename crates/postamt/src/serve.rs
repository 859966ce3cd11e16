//! `postamt serve`: wires the services together. Opens the directory, spool
//! and store; binds every configured listener; starts the delivery agent and
//! the control socket; writes `run/listeners.json` once everything listens;
//! and on SIGTERM/SIGINT stops accepting, lets sessions end and the delivery
//! agent finish what it holds, then exits.

use anyhow::{Context, Result};
use postamt_config::Config;
use postamt_delivery::DeliveryAgent;
use postamt_directory::Directory;
use postamt_directory::auth::Authenticator;
use postamt_net::{ConnectionLimits, Service};
use postamt_ops::control::{self, Command};
use postamt_pop3::Pop3Context;
use postamt_receiver::ReceiverContext;
use postamt_spool::Spool;
use postamt_store::MailStore;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long sessions get to finish after a shutdown request.
const SESSION_GRACE: Duration = Duration::from_secs(30);

const SMTP: Service = Service {
    name: "smtp",
    busy_reply: b"421 4.7.0 Too many connections, try again later\r\n",
};
const POP3: Service = Service {
    name: "pop3",
    busy_reply: b"-ERR [SYS/TEMP] Too many connections, try again later\r\n",
};

pub fn run(config_path: &Path) -> Result<()> {
    let config = Arc::new(postamt_config::load(config_path)?);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let _guards = crate::logging::init_server(&config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("postamt")
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(serve(config));
    if let Err(e) = &result {
        tracing::error!(target: "postamt", error = %format!("{e:#}"), "server stopped");
    }
    result
}

async fn serve(config: Arc<Config>) -> Result<()> {
    let run_dir = config.run_dir();
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    let listeners_file = run_dir.join("listeners.json");
    let _ = std::fs::remove_file(&listeners_file);

    let directory = Arc::new(
        Directory::open(&config.directory_db())
            .with_context(|| format!("cannot open {}", config.directory_db().display()))?,
    );
    let spool = Arc::new(
        Spool::open(&config.spool_dir())
            .with_context(|| format!("cannot open the spool {}", config.spool_dir().display()))?,
    );
    let store = Arc::new(MailStore::new(
        &config.mailbox_template(),
        &config.primary_domain(),
        config.create_mailboxes,
    ));
    let auth = Arc::new(Authenticator::new(Arc::clone(&directory)));
    warn_if_postmaster_unread(&config, &directory);

    for (name, addrs) in [
        ("submission", &config.listen.submission),
        ("submissions", &config.listen.submissions),
        ("pop3s", &config.listen.pop3s),
        ("imap", &config.listen.imap),
        ("imaps", &config.listen.imaps),
        ("admin", &config.listen.admin),
    ] {
        if !addrs.is_empty() {
            tracing::warn!(target: "postamt", service = name, "this service is not available in this version; its [listen] entry is ignored");
        }
    }

    // Bind everything first, so a port conflict stops the start cleanly.
    let smtp = postamt_net::bind(&config.listen.smtp).await?;
    let pop3 = postamt_net::bind(&config.listen.pop3).await?;
    let mut bound: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, ls) in [("smtp", &smtp), ("pop3", &pop3)] {
        for l in ls.iter() {
            bound
                .entry(name)
                .or_default()
                .push(l.local_addr()?.to_string());
        }
    }

    let shutdown = CancellationToken::new();
    let sessions = TaskTracker::new();
    let limits = ConnectionLimits::new(
        config.limits.max_connections,
        config.limits.max_connections_per_ip,
    );

    let agent = DeliveryAgent::new(
        Arc::clone(&config),
        Arc::clone(&directory),
        Arc::clone(&spool),
        Arc::clone(&store),
    );
    let agent_task = tokio::spawn(Arc::clone(&agent).run(shutdown.child_token()));

    let control_task = {
        let path = control::socket_path(&run_dir);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("cannot create the control socket {}", path.display()))?;
        restrict_permissions(&path);
        tokio::spawn(control_loop(listener, Arc::clone(&agent), shutdown.clone()))
    };

    let rctx = Arc::new(ReceiverContext {
        config: Arc::clone(&config),
        directory: Arc::clone(&directory),
        spool: Arc::clone(&spool),
    });
    let mut accept_tasks = Vec::new();
    for l in smtp {
        let ctx = Arc::clone(&rctx);
        accept_tasks.push(tokio::spawn(postamt_net::serve(
            l,
            SMTP,
            Arc::clone(&limits),
            shutdown.clone(),
            sessions.clone(),
            move |stream, peer, sd| {
                postamt_receiver::handle_connection(stream, peer, Arc::clone(&ctx), sd)
            },
        )));
    }
    let pctx = Arc::new(Pop3Context {
        config: Arc::clone(&config),
        auth: Arc::clone(&auth),
        store: Arc::clone(&store),
    });
    for l in pop3 {
        let ctx = Arc::clone(&pctx);
        accept_tasks.push(tokio::spawn(postamt_net::serve(
            l,
            POP3,
            Arc::clone(&limits),
            shutdown.clone(),
            sessions.clone(),
            move |stream, peer, sd| {
                postamt_pop3::handle_connection(stream, peer, Arc::clone(&ctx), sd)
            },
        )));
    }

    std::fs::write(
        run_dir.join("postamt.pid"),
        format!("{}\n", std::process::id()),
    )?;
    write_atomically(&listeners_file, &serde_json::to_vec_pretty(&bound)?)?;
    tracing::info!(target: "postamt", hostname = %config.hostname, listeners = ?bound, "postamt started");

    wait_for_signal().await?;
    tracing::info!(target: "postamt", "shutting down: no new connections, sessions are told to finish");
    shutdown.cancel();
    for t in accept_tasks {
        let _ = t.await;
    }
    sessions.close();
    if tokio::time::timeout(SESSION_GRACE, sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(target: "postamt", open = sessions.len(), "sessions still open after the grace period; closing them");
    }
    let _ = agent_task.await;
    control_task.abort();
    let _ = std::fs::remove_file(control::socket_path(&run_dir));
    let _ = std::fs::remove_file(&listeners_file);
    let _ = std::fs::remove_file(run_dir.join("postamt.pid"));
    tracing::info!(target: "postamt", "postamt stopped");
    Ok(())
}

/// Postmaster mail is always accepted; say so when nobody would read it.
fn warn_if_postmaster_unread(config: &Config, directory: &Directory) {
    let local = postamt_directory::LocalDomains::from_config(config);
    let orphan = postamt_directory::Destination::Local {
        user: "postmaster".into(),
    };
    if let Ok(dest) = directory.resolve("postmaster", &local)
        && dest == [orphan]
        && matches!(directory.get_user("postmaster"), Ok(None))
    {
        tracing::warn!(target: "postamt", "postmaster has no user, alias or admin account: its mail is kept in the mailbox directory `postmaster`; fix with `postamt alias add postmaster <user>`");
    }
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// Serves the control socket: one command per connection.
async fn control_loop(
    listener: UnixListener,
    agent: Arc<DeliveryAgent>,
    shutdown: CancellationToken,
) {
    loop {
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = listener.accept() => c,
        };
        let Ok((stream, _)) = conn else { continue };
        let agent = Arc::clone(&agent);
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(r, 256));
            let read =
                tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await;
            let reply = match (read, Command::parse(&line)) {
                (Ok(Ok(_)), Some(Command::Flush)) => {
                    tracing::info!(target: "postamt", "queue flush requested");
                    agent.flush();
                    "ok\n"
                }
                (Ok(Ok(_)), Some(Command::Rescan)) => {
                    agent.rescan();
                    "ok\n"
                }
                _ => "error unknown command\n",
            };
            let _ = w.write_all(reply.as_bytes()).await;
        });
    }
}

fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}
