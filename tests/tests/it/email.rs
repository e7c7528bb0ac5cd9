//! Email over SMTP against a real server on loopback (Python's aiosmtpd,
//! `outpost_testkit::SmtpServer`): STARTTLS required before anything else,
//! AUTH required and only over TLS, the relay's certificate from the kit's
//! PKI trusted through `ca_file`. A failing check mails `[FIRING]` and its
//! recovery `[RESOLVED]`; a wrong password (535) is not retried and raises a
//! `notifier_failing` alert on the fallback route.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use outpost_e2e::{Fleet, settled};
use outpost_testkit::{HttpServer, Pki, Reply, SmtpServer, WebhookReceiver};

const USER: &str = "outpost";
const PASSWORD: &str = "smtp-password-S3CRET-0123456789abcdef";
const EXTERNAL: &str = "https://outpost.example.com";

async fn target(failing: Arc<AtomicBool>) -> outpost_testkit::RunningServer {
    HttpServer::builder()
        .handler("/health", move |_| {
            if failing.load(Ordering::SeqCst) {
                Reply::text(503, "down")
            } else {
                Reply::text(200, "ok")
            }
        })
        .run()
        .await
        .unwrap()
}

/// A controller with one region, check `api` paging on the first failure,
/// an email sink to `port` with `password`, and a fallback webhook.
async fn controller(
    fleet: &Fleet,
    url: &str,
    port: u16,
    ca: &std::path::Path,
    password: &str,
    fallback: &str,
) -> outpost_controller::RunningController {
    let secret = fleet.secret("smtp.password", password);
    let text = format!(
        "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\nallow_plaintext_probes = true\n\
         external_url = \"{EXTERNAL}\"\n[store]\npath = \"{db}\"\n{probes}\
         [alerting]\nnotifier_failing_after = \"1m\"\n\
         [[checks]]\nid = \"api\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\
         alert = {{ min_regions = 1, confirmations = 1, severity = \"critical\" }}\nhttp = {{ url = \"{url}\" }}\n\
         [[sinks]]\nname = \"mail\"\nemail = {{ host = \"localhost\", port = {port}, ca_file = \"{ca}\", \
         username = \"{USER}\", password = {{ file = \"{secret}\" }}, from = \"Outpost <outpost@example.com>\", \
         to = [\"oncall@example.com\", \"sre@example.com\"] }}\n\
         [[sinks]]\nname = \"fallback\"\nwebhook = {{ url = \"{fallback}\" }}\n\
         [[routes]]\nname = \"oncall\"\nsinks = [\"mail\"]\n\
         [[routes]]\nname = \"ops\"\nsinks = [\"fallback\"]\nfallback = true\nkinds = [\"probe_offline\"]\n",
        db = fleet.db().display(),
        probes = fleet.probes_toml(&["eu-west"]),
        ca = ca.display(),
        secret = secret.display(),
    );
    let cfg = outpost_controller::config::parse(&text, "test controller", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    outpost_controller::Controller::start(cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_is_mailed_over_starttls_with_auth_then_resolved() {
    let pki = Pki::new("relay root");
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_root_pem(dir.path()).unwrap();
    let smtp = SmtpServer::start(&pki.leaf(&["localhost"]), USER, PASSWORD)
        .await
        .unwrap();
    let fallback = WebhookReceiver::start().await.unwrap();
    let fleet = Fleet::new();
    let failing = Arc::new(AtomicBool::new(true));
    let srv = target(failing.clone()).await;
    let ctl = controller(
        &fleet,
        &srv.url("/health"),
        smtp.port(),
        &ca,
        PASSWORD,
        &fallback.url(),
    )
    .await;
    let probe = fleet.probe("eu-west", ctl.grpc_addr(), None);

    let mail = smtp.wait_for_messages(1, Duration::from_secs(20)).await;
    assert_eq!(mail.len(), 1, "one message for the trigger: {mail:#?}");
    let m = &mail[0];
    assert!(m.tls, "sent only after STARTTLS");
    assert!(m.auth, "authenticated");
    assert_eq!(m.mail_from, "outpost@example.com");
    assert_eq!(m.rcpt_tos, ["oncall@example.com", "sre@example.com"]);
    let subject = m.header("subject").unwrap();
    assert!(subject.starts_with("[FIRING] api"), "{subject}");
    assert!(m.header("from").unwrap().contains("outpost@example.com"));
    let body = m.body();
    assert!(body.contains(&format!("{EXTERNAL}/checks/api")), "{body}");
    assert!(body.contains("eu-west"), "{body}");
    assert!(
        !m.data.contains(PASSWORD),
        "the password is never in a message"
    );

    failing.store(false, Ordering::SeqCst);
    let mail = smtp.wait_for_messages(2, Duration::from_secs(20)).await;
    assert_eq!(mail.len(), 2, "{mail:#?}");
    let subject = mail[1].header("subject").unwrap();
    assert!(subject.starts_with("[RESOLVED] api"), "{subject}");
    settled(&ctl).await;
    assert_eq!(smtp.messages().len(), 2, "one trigger, one resolve");
    assert!(fallback.bodies().is_empty(), "the sink is healthy");
    probe.shutdown().await;
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_password_is_not_retried_and_pages_the_fallback_route() {
    let pki = Pki::new("relay root");
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_root_pem(dir.path()).unwrap();
    let smtp = SmtpServer::start(&pki.leaf(&["localhost"]), USER, PASSWORD)
        .await
        .unwrap();
    let fallback = WebhookReceiver::start().await.unwrap();
    let fleet = Fleet::new();
    let srv = target(Arc::new(AtomicBool::new(true))).await;
    let wrong = "not-the-password-0123456789abcdefgh";
    let ctl = controller(
        &fleet,
        &srv.url("/health"),
        smtp.port(),
        &ca,
        wrong,
        &fallback.url(),
    )
    .await;
    let probe = fleet.probe("eu-west", ctl.grpc_addr(), None);

    let bodies = fallback.wait_for_bodies(1, Duration::from_secs(20)).await;
    let notifier: Vec<_> = bodies
        .iter()
        .filter(|b| b["kind"] == "notifier_failing")
        .collect();
    assert_eq!(notifier.len(), 1, "{bodies:#?}");
    assert_eq!(
        notifier[0]["dedup_key"], "outpost/sink/mail/notifier_failing",
        "{notifier:?}"
    );
    settled(&ctl).await;
    assert!(smtp.messages().is_empty(), "nothing accepted without AUTH");
    let m = ctl.controller().metrics();
    assert_eq!(
        m.get(
            "outpost_notifications_total",
            &[("sink", "mail"), ("outcome", "rejected")]
        ),
        1.0,
        "535 is permanent: tried once"
    );
    probe.shutdown().await;
    ctl.shutdown().await;
}
