//! `postamt serve`: wires the services together. Binds every configured
//! listener, drops root, opens the directory, spool, store and certificates;
//! starts the delivery agent, the control socket, the web admin and
//! certificate reloading (SIGHUP or file change); writes
//! `run/listeners.json` once everything listens; and on SIGTERM/SIGINT stops
//! accepting, lets sessions end and the delivery agent finish what it holds,
//! then exits.
//!
//! Reload (SIGHUP, or a setting saved in the web admin) re-reads the config
//! file and builds fresh session contexts: new connections see the new
//! settings at once; listeners, directories, limits and logging need a
//! restart and are reported as such.

use anyhow::{Context, Result};
use postamt_config::Config;
use postamt_delivery::context::DEFAULT_MAX_IN_FLIGHT;
use postamt_delivery::{DeliveryAgent, DkimSigning, RemoteDelivery};
use postamt_directory::Directory;
use postamt_directory::auth::Authenticator;
use postamt_imap::ImapContext;
use postamt_net::tls::TlsProvider;
use postamt_net::{ConnectionLimits, Service};
use postamt_ops::control::{self, Command};
use postamt_pop3::{Pop3Context, SessionProps};
use postamt_receiver::{Mode, ReceiverContext, SessionOptions};
use postamt_spool::Spool;
use postamt_store::MailStore;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixListener};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long sessions get to finish after a shutdown request.
const SESSION_GRACE: Duration = Duration::from_secs(30);

const SMTP: Service = Service {
    name: "smtp",
    busy_reply: b"421 4.7.0 Too many connections, try again later\r\n",
};
const SUBMISSION: Service = Service {
    name: "submission",
    busy_reply: b"421 4.7.0 Too many connections, try again later\r\n",
};
const SUBMISSIONS: Service = Service {
    name: "submissions",
    busy_reply: b"",
};
const POP3S: Service = Service {
    name: "pop3s",
    busy_reply: b"",
};
const POP3: Service = Service {
    name: "pop3",
    busy_reply: b"-ERR [SYS/TEMP] Too many connections, try again later\r\n",
};
const IMAP: Service = Service {
    name: "imap",
    busy_reply: b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n",
};
const IMAPS: Service = Service {
    name: "imaps",
    busy_reply: b"",
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
    let result = rt.block_on(serve(config, config_path.to_path_buf()));
    // Blocking work still running (a stuck disk, a slow DNS lookup) must not
    // keep the process from exiting; the spool is consistent by design.
    rt.shutdown_timeout(Duration::from_secs(5));
    if let Err(e) = &result {
        tracing::error!(target: "postamt", error = %format!("{e:#}"), "server stopped");
    }
    result
}

async fn serve(config: Arc<Config>, config_path: std::path::PathBuf) -> Result<()> {
    let run_dir = config.run_dir();
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    let listeners_file = run_dir.join("listeners.json");
    let _ = std::fs::remove_file(&listeners_file);

    // Bind everything first (as root, ports below 1024 work), so a port
    // conflict stops the start cleanly; then give up root.
    let smtp = postamt_net::bind(&config.listen.smtp).await?;
    let submission = postamt_net::bind(&config.listen.submission).await?;
    let submissions = postamt_net::bind(&config.listen.submissions).await?;
    let pop3 = postamt_net::bind(&config.listen.pop3).await?;
    let pop3s = postamt_net::bind(&config.listen.pop3s).await?;
    let imap = postamt_net::bind(&config.listen.imap).await?;
    let imaps = postamt_net::bind(&config.listen.imaps).await?;
    let admin = postamt_net::bind(&config.listen.admin).await?;
    let mut bound: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, ls) in [
        ("smtp", &smtp),
        ("submission", &submission),
        ("submissions", &submissions),
        ("pop3", &pop3),
        ("pop3s", &pop3s),
        ("imap", &imap),
        ("imaps", &imaps),
        ("admin", &admin),
    ] {
        for l in ls.iter() {
            bound
                .entry(name)
                .or_default()
                .push(l.local_addr()?.to_string());
        }
    }
    drop_privileges(&config)?;

    let directory = Arc::new(
        Directory::open(&config.directory_db())
            .with_context(|| format!("cannot open {}", config.directory_db().display()))?,
    );
    let spool = Arc::new(
        Spool::open(&config.spool_dir())
            .with_context(|| format!("cannot open the spool {}", config.spool_dir().display()))?,
    );
    let store = Arc::new(store_for(&config));
    let auth = Arc::new(Authenticator::new(Arc::clone(&directory)));
    let tls = TlsProvider::from_config(&config).context("cannot set up TLS")?;
    let srs_key = config.data_dir.join("srs.key");
    let srs = Arc::new(
        postamt_srs::Srs::load_or_create(&srs_key, &config.primary_domain())
            .with_context(|| format!("cannot load the SRS secret {}", srs_key.display()))?,
    );
    warn_if_postmaster_unread(&config, &directory);

    let shutdown = CancellationToken::new();
    let sessions = TaskTracker::new();
    let limits = ConnectionLimits::new(
        config.limits.max_connections,
        config.limits.max_connections_per_ip,
    );
    let handshake_timeout = config.limits.idle_timeout.get().min(MAX_HANDSHAKE);

    let dkim =
        postamt_sender_auth::DkimSigner::load(&config).context("cannot load the DKIM keys")?;
    if !dkim.domains().is_empty() {
        tracing::info!(target: "postamt", domains = ?dkim.domains(), "DKIM signing keys loaded");
    }
    let remote = RemoteDelivery::from_config(&config, DEFAULT_MAX_IN_FLIGHT)
        .context("cannot set up remote delivery")?
        .with_signer(Arc::new(DkimSigning::new(dkim)));
    let agent = DeliveryAgent::with_remote_and_srs(
        Arc::clone(&config),
        Arc::clone(&directory),
        Arc::clone(&spool),
        Arc::clone(&store),
        remote,
        Some(Arc::clone(&srs)),
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
    let watcher = tls.spawn_watcher(shutdown.clone(), CERT_POLL);

    let shared = Arc::new(Shared {
        directory: Arc::clone(&directory),
        spool: Arc::clone(&spool),
        auth: Arc::clone(&auth),
        tls: Arc::clone(&tls),
        srs: Arc::clone(&srs),
        config_path: config_path.clone(),
        handshake_timeout,
        store: Arc::clone(&store),
        agent: Arc::clone(&agent),
        live: RwLock::new(None),
    });
    shared.install(build_contexts(Arc::clone(&config), &shared)?);
    let reloader: postamt_admin::Reloader = {
        let shared = Arc::clone(&shared);
        let running = Arc::clone(&config);
        Arc::new(move || shared.reload(&running))
    };
    let hup_task = tokio::spawn(reload_on_sighup(
        Arc::clone(&tls),
        Arc::clone(&reloader),
        shutdown.clone(),
    ));
    let mut accept_tasks = Vec::new();
    for (listeners, service, kind, implicit_tls) in [
        (smtp, SMTP, Kind::Smtp(Mode::Mx), false),
        (submission, SUBMISSION, Kind::Smtp(Mode::Submission), false),
        (submissions, SUBMISSIONS, Kind::Smtp(Mode::Submission), true),
        (pop3, POP3, Kind::Pop3, false),
        (pop3s, POP3S, Kind::Pop3, true),
        (imap, IMAP, Kind::Imap, false),
        (imaps, IMAPS, Kind::Imap, true),
    ] {
        for l in listeners {
            let shared = Arc::clone(&shared);
            accept_tasks.push(tokio::spawn(postamt_net::serve(
                l,
                service,
                Arc::clone(&limits),
                shutdown.clone(),
                sessions.clone(),
                move |stream, peer, sd| {
                    let ctx = shared.contexts();
                    async move {
                        if implicit_tls {
                            let acceptor = ctx.tls.acceptor();
                            if let Some(stream) = handshake(
                                &acceptor,
                                stream,
                                peer,
                                service.name,
                                ctx.handshake_timeout,
                            )
                            .await
                            {
                                run_session(kind, stream, peer, &ctx, true, sd).await;
                            }
                        } else {
                            run_session(kind, stream, peer, &ctx, false, sd).await;
                        }
                    }
                },
            )));
        }
    }

    let admin_ctx = Arc::new(postamt_admin::AdminContext {
        config: Arc::clone(&config),
        config_path: config_path.clone(),
        auth: Arc::clone(&auth),
        // HTTPS when certificates are configured; the self-signed fallback
        // would only train admins to click through warnings.
        tls: config.tls.cert.is_some().then(|| Arc::clone(&tls)),
        served_tls: Some(Arc::clone(&tls)),
        reload: Arc::clone(&reloader),
    });
    for l in admin {
        accept_tasks.push(tokio::spawn(postamt_admin::serve(
            l,
            Arc::clone(&admin_ctx),
            shutdown.clone(),
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
    // Deliveries' IMAP index entries still queued (losing them would only
    // cost a parse at the next IMAP refresh).
    if !tokio::task::spawn_blocking(postamt_store::flush_index_writes)
        .await
        .unwrap_or(false)
    {
        tracing::warn!(target: "postamt", "the IMAP index writer did not finish; sessions will index the rest");
    }
    control_task.abort();
    hup_task.abort();
    watcher.abort();
    let _ = std::fs::remove_file(control::socket_path(&run_dir));
    let _ = std::fs::remove_file(&listeners_file);
    let _ = std::fs::remove_file(run_dir.join("postamt.pid"));
    tracing::info!(target: "postamt", "postamt stopped");
    Ok(())
}

/// Longest TLS handshake allowed on the implicit-TLS ports.
const MAX_HANDSHAKE: Duration = Duration::from_secs(60);
/// How often certificate files are checked for changes.
const CERT_POLL: Duration = Duration::from_secs(10);

/// Which protocol a listener speaks.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Smtp(Mode),
    Pop3,
    Imap,
}

/// What every session needs; each new connection takes the current one,
/// so a reload reaches new sessions while running ones keep theirs.
struct SessionContexts {
    smtp: Arc<ReceiverContext>,
    pop3: Arc<Pop3Context>,
    imap: Arc<ImapContext>,
    tls: Arc<TlsProvider>,
    handshake_timeout: Duration,
}

/// The long-lived parts the session contexts are built from, and the
/// current contexts.
struct Shared {
    directory: Arc<Directory>,
    spool: Arc<Spool>,
    auth: Arc<Authenticator>,
    tls: Arc<TlsProvider>,
    srs: Arc<postamt_srs::Srs>,
    config_path: std::path::PathBuf,
    handshake_timeout: Duration,
    /// One store for every service (delivery included): a reload changes
    /// its layout in place.
    store: Arc<MailStore>,
    agent: Arc<DeliveryAgent>,
    live: RwLock<Option<Arc<SessionContexts>>>,
}

impl Shared {
    /// The contexts new sessions use.
    fn contexts(&self) -> Arc<SessionContexts> {
        self.live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .expect("contexts are installed before the first accept")
    }

    fn install(&self, ctx: SessionContexts) {
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(ctx));
    }

    /// Re-reads the config file and applies what can change without a
    /// restart; says what was applied and what waits for a restart.
    fn reload(&self, running: &Config) -> std::result::Result<String, String> {
        let config = postamt_config::load(&self.config_path).map_err(|e| format!("{e:#}"))?;
        let config = Arc::new(config);
        let ctx = build_contexts(Arc::clone(&config), self).map_err(|e| format!("{e:#}"))?;
        // The store and the delivery agent first, so no session of the new
        // contexts accepts mail (a new domain, say) that delivery would
        // still treat by the old rules.
        self.store.reconfigure(
            &config.mailbox_template(),
            &config.primary_domain(),
            config.create_mailboxes,
        );
        self.agent.reconfigure(Arc::clone(&config));
        self.install(ctx);
        let restart = restart_needed(running, &config);
        tracing::info!(target: "postamt", restart_needed = ?restart, "configuration reloaded: new sessions use it");
        Ok(if restart.is_empty() {
            "configuration reloaded; new connections use it".to_string()
        } else {
            format!(
                "configuration reloaded; a restart is needed for: {}",
                restart.join(", ")
            )
        })
    }
}

/// The mailbox store as `config` describes it.
fn store_for(config: &Config) -> MailStore {
    MailStore::new(
        &config.mailbox_template(),
        &config.primary_domain(),
        config.create_mailboxes,
    )
}

/// Builds every session context from `config` and the shared parts.
fn build_contexts(config: Arc<Config>, shared: &Shared) -> Result<SessionContexts> {
    let sender_auth = if config.sender_auth.verify {
        Some(Arc::new(
            postamt_sender_auth::SenderVerifier::new(&config)
                .context("cannot set up SPF/DKIM/DMARC checks")?,
        ))
    } else {
        None
    };
    let store = Arc::clone(&shared.store);
    Ok(SessionContexts {
        smtp: Arc::new(ReceiverContext {
            config: Arc::clone(&config),
            directory: Arc::clone(&shared.directory),
            spool: Arc::clone(&shared.spool),
            tls: Some(Arc::clone(&shared.tls)),
            auth: Arc::clone(&shared.auth),
            sender_auth,
            srs: Some(Arc::clone(&shared.srs)),
        }),
        pop3: Arc::new(Pop3Context {
            config: Arc::clone(&config),
            auth: Arc::clone(&shared.auth),
            store: Arc::clone(&store),
            tls: Some(Arc::clone(&shared.tls)),
        }),
        imap: Arc::new(ImapContext {
            config: Arc::clone(&config),
            auth: Arc::clone(&shared.auth),
            store,
            tls: Some(Arc::clone(&shared.tls)),
        }),
        tls: Arc::clone(&shared.tls),
        handshake_timeout: shared.handshake_timeout,
    })
}

/// The settings of `new` that differ from the running `old` and take
/// effect only after a restart.
fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let differs = |a: &dyn erased::Json, b: &dyn erased::Json| a.json() != b.json();
    let mut keys = Vec::new();
    for (key, a, b) in [
        (
            "listen",
            &old.listen as &dyn erased::Json,
            &new.listen as &dyn erased::Json,
        ),
        ("data_dir", &old.data_dir, &new.data_dir),
        ("spool_dir", &old.spool_dir, &new.spool_dir),
        ("user", &old.user, &new.user),
        ("limits", &old.limits, &new.limits),
        ("logging", &old.logging, &new.logging),
        ("tls", &old.tls, &new.tls),
        ("delivery", &routing(&old.delivery), &routing(&new.delivery)),
        ("dkim", &old.dkim, &new.dkim),
        ("dns", &old.dns, &new.dns),
        ("admin", &old.admin, &new.admin),
    ] {
        if differs(a, b) {
            keys.push(key);
        }
    }
    keys
}

/// The `[delivery]` settings fixed at start (routing, TLS, timeouts,
/// connection limits): the others (retry schedule, give-up and warning
/// times, copies of local failures) apply on reload.
fn routing(d: &postamt_config::Delivery) -> postamt_config::Delivery {
    let defaults = postamt_config::Delivery::default();
    postamt_config::Delivery {
        retry_intervals: defaults.retry_intervals,
        give_up_after: defaults.give_up_after,
        delay_warning_after: defaults.delay_warning_after,
        copy_local_failures_to_postmaster: defaults.copy_local_failures_to_postmaster,
        ..d.clone()
    }
}

/// Comparing config sections of different types through their JSON form.
mod erased {
    pub trait Json {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}

/// Runs one session of `kind`; `tls_active` when the stream is already TLS
/// (implicit-TLS ports), else STARTTLS/STLS is offered.
async fn run_session<S>(
    kind: Kind,
    stream: S,
    peer: SocketAddr,
    ctx: &SessionContexts,
    tls_active: bool,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match kind {
        Kind::Smtp(mode) => {
            let options = SessionOptions { mode, tls_active };
            postamt_receiver::handle_connection_with(
                stream,
                peer,
                Arc::clone(&ctx.smtp),
                options,
                shutdown,
            )
            .await
        }
        Kind::Pop3 => {
            let props = SessionProps {
                secure: tls_active,
                loopback: is_loopback(peer),
                tls_available: !tls_active,
            };
            postamt_pop3::handle_connection_with(
                stream,
                peer,
                Arc::clone(&ctx.pop3),
                props,
                shutdown,
            )
            .await
        }
        Kind::Imap => {
            let props = postamt_imap::SessionProps {
                secure: tls_active,
                loopback: is_loopback(peer),
                tls_available: !tls_active,
            };
            postamt_imap::handle_connection_with(
                stream,
                peer,
                Arc::clone(&ctx.imap),
                props,
                shutdown,
            )
            .await
        }
    }
}

/// The TLS handshake of an implicit-TLS port (465, 995); `None` (logged)
/// when it fails or takes too long.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    service: &'static str,
    limit: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let proto = match service {
        "submissions" => postamt_metrics::Protocol::Submission,
        "pop3s" => postamt_metrics::Protocol::Pop3,
        "imaps" => postamt_metrics::Protocol::Imap,
        _ => postamt_metrics::Protocol::Smtp,
    };
    let outcome = match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::info!(target: "postamt", service, %peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(target: "postamt", service, %peer, "TLS handshake timed out");
            None
        }
    };
    postamt_metrics::global().tls_handshake(proto, outcome.is_some());
    outcome
}

fn is_loopback(peer: SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Re-reads the certificates and the config file on SIGHUP; a broken file
/// keeps the old ones.
async fn reload_on_sighup(
    tls: Arc<TlsProvider>,
    reload: postamt_admin::Reloader,
    shutdown: CancellationToken,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!(target: "postamt", "cannot listen for SIGHUP; certificates reload on file change only");
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = hup.recv() => if r.is_none() { return },
        }
        let tls = Arc::clone(&tls);
        match tokio::task::spawn_blocking(move || tls.reload()).await {
            Ok(Ok(outcome)) => {
                tracing::info!(target: "postamt", ?outcome, "SIGHUP: certificates checked")
            }
            Ok(Err(e)) => {
                tracing::error!(target: "postamt", error = %e, "SIGHUP: certificate reload failed; the previous certificates stay in use")
            }
            Err(e) => tracing::error!(target: "postamt", error = %e, "SIGHUP: reload task failed"),
        }
        let reload = Arc::clone(&reload);
        match tokio::task::spawn_blocking(move || reload()).await {
            Ok(Ok(summary)) => {
                tracing::info!(target: "postamt", %summary, "SIGHUP: configuration checked")
            }
            Ok(Err(e)) => {
                tracing::error!(target: "postamt", error = %e, "SIGHUP: the config file has errors; the running configuration stays")
            }
            Err(e) => tracing::error!(target: "postamt", error = %e, "SIGHUP: reload task failed"),
        }
    }
}

/// When started as root: hand the data to `user` and become it.
fn drop_privileges(config: &Config) -> Result<()> {
    if !crate::privilege::is_root() {
        return Ok(());
    }
    let Some(name) = &config.user else {
        tracing::warn!(target: "postamt", "running as root: set `user` in the config so the server drops its privileges after binding the ports");
        return Ok(());
    };
    let account = crate::privilege::lookup(name)?;
    let mut dirs = vec![
        config.data_dir.clone(),
        config.spool_dir(),
        config.log_dir(),
    ];
    if let Some(root) = mailbox_root(&config.mailbox_template()) {
        dirs.push(root);
    }
    for d in dirs {
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        let n = crate::privilege::chown_tree(&d, account)?;
        if n > 0 {
            tracing::info!(target: "postamt", dir = %d.display(), changed = n, user = %name, "handed files to the service user");
        }
    }
    crate::privilege::switch_to(account)?;
    tracing::info!(target: "postamt", user = %name, uid = account.uid, gid = account.gid, "dropped root privileges");
    Ok(())
}

/// The fixed directory above the first `%` placeholder of the template.
fn mailbox_root(template: &str) -> Option<std::path::PathBuf> {
    let fixed = &template[..template.find('%')?];
    let p = Path::new(fixed);
    let dir = if fixed.ends_with('/') { p } else { p.parent()? };
    (!dir.as_os_str().is_empty()).then(|| dir.to_path_buf())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_needed_names_the_sections_fixed_at_start() {
        let old = Config::default();
        assert!(restart_needed(&old, &old.clone()).is_empty());
        let mut new = old.clone();
        new.admin.allow_plaintext_http = !old.admin.allow_plaintext_http;
        new.delivery.copy_local_failures_to_postmaster =
            !old.delivery.copy_local_failures_to_postmaster;
        assert_eq!(
            restart_needed(&old, &new),
            ["admin"],
            "[admin] needs a restart, postmaster copies do not"
        );
    }
}
